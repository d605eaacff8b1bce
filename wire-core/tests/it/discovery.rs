//! Clusters that form themselves: three `wire node` processes started together with
//! `--discover` and `--bootstrap-expect 3` against a real DNS server (Debian's dnsmasq: A and
//! SRV records) and a real etcd (Debian's etcd-server): exactly one bootstraps, the others
//! join; a node killed and restarted comes back; a node stopped cleanly deregisters; two
//! clusters under different etcd prefixes stay apart.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::support::*;

/// A server process killed with the test.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn which(binary: &str) -> String {
    for dir in ["/usr/sbin", "/usr/bin", "/sbin", "/bin", "/usr/local/bin"] {
        let path = format!("{dir}/{binary}");
        if std::path::Path::new(&path).exists() {
            return path;
        }
    }
    panic!("{binary} is not installed (Debian: dnsmasq-base, etcd-server; .ci/run installs them)")
}

/// dnsmasq on 127.0.0.1:`port` answering only the records given.
fn dnsmasq(port: u16, records: &[String]) -> Server {
    let child = Command::new(which("dnsmasq"))
        .args([
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--pid-file=",
            "--listen-address=127.0.0.1",
            "--bind-interfaces",
            &format!("--port={port}"),
        ])
        .args(records)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("dnsmasq");
    Server(child)
}

/// Waits until `n` nodes of `nodes` agree on one leader and `n` voters; the leader's id.
async fn formed(nodes: &[Proc], n: usize) -> u64 {
    eventually(Duration::from_secs(60), "the cluster to form", || async {
        let mut leaders = Vec::new();
        for p in nodes {
            let s = p.status().await?;
            let voters = s["members"]
                .as_array()?
                .iter()
                .filter(|m| m["voter"] == true)
                .count();
            if voters != n {
                return None;
            }
            leaders.push(s["leader"]["id"].as_u64()?);
        }
        leaders.dedup();
        (leaders.len() == 1).then(|| leaders[0])
    })
    .await
}

fn bootstraps(nodes: &[Proc]) -> usize {
    nodes
        .iter()
        .filter(|p| p.log_text().contains("bootstrapped a new cluster"))
        .count()
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_find_each_other_through_dns_a_and_srv_records() {
    let dns_port = free_port();
    let root = tempfile::tempdir().expect("dir");

    // A records: three nodes on 127.0.0.1-3, all on one HTTP port.
    let http_port = free_port();
    let mut records: Vec<String> = (1..=3)
        .map(|i| format!("--host-record=nodes.wire.test,127.0.0.{i}"))
        .collect();
    // SRV records: three more nodes on 127.0.0.1, each on its own port.
    let srv_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    for (i, port) in srv_ports.iter().enumerate() {
        records.push(format!(
            "--srv-host=_wire._tcp.srv.wire.test,n{i}.srv.wire.test,{port}"
        ));
        records.push(format!("--host-record=n{i}.srv.wire.test,127.0.0.1"));
    }
    let _dns = dnsmasq(dns_port, &records);
    let dns_server = format!("127.0.0.1:{dns_port}");

    let by_a = args(&[
        "--discover",
        "dns:nodes.wire.test",
        "--dns-server",
        &dns_server,
        "--bootstrap-expect",
        "3",
    ]);
    let a_root = root.path().join("a");
    let mut a: Vec<Proc> = (1..=3)
        .map(|i| {
            Proc::start_at(
                &a_root,
                i,
                format!("127.0.0.{i}:{http_port}"),
                format!("127.0.0.{i}:{}", free_port()),
                &by_a,
            )
        })
        .collect();
    let by_srv = args(&[
        "--discover",
        "dns-srv:_wire._tcp.srv.wire.test",
        "--dns-server",
        &dns_server,
        "--bootstrap-expect",
        "3",
    ]);
    let srv_root = root.path().join("srv");
    // Ids in another order than the records, so the lowest id is not simply the first.
    let srv: Vec<Proc> = srv_ports
        .iter()
        .zip([12, 10, 11])
        .map(|(port, id)| {
            Proc::start_at(
                &srv_root,
                id,
                format!("127.0.0.1:{port}"),
                format!("127.0.0.1:{}", free_port()),
                &by_srv,
            )
        })
        .collect();

    formed(&a, 3).await;
    assert_eq!(
        bootstraps(&a),
        1,
        "exactly one of the A-record nodes bootstraps"
    );
    formed(&srv, 3).await;
    assert_eq!(bootstraps(&srv), 1);
    assert!(srv
        .iter()
        .find(|p| p.id == 10)
        .is_some_and(|p| p.log_text().contains("bootstrapped a new cluster")));

    // A node killed and restarted comes back into the cluster; writes reach it.
    let leader = formed(&a, 3).await;
    let victim = a.iter_mut().find(|p| p.id != leader).expect("a follower");
    victim.kill9();
    victim.restart(&by_a);
    let id = victim.id;
    formed(&a, 3).await;
    let resp = a[(leader - 1) as usize]
        .put("after-restart", "back")
        .await
        .expect("put");
    assert_eq!(resp.status(), 200);
    let back = eventually(
        Duration::from_secs(20),
        "the write on the restarted node",
        || {
            let p = &a[(id - 1) as usize];
            async move { p.try_get("after-restart", "local").await }
        },
    )
    .await;
    assert_eq!(back, "back");
    assert_eq!(bootstraps(&a), 1, "the restart did not bootstrap anew");
}

/// etcd on free ports, in `dir`.
fn etcd(dir: &std::path::Path) -> (Server, String) {
    let client = free_port();
    let peer = free_port();
    let child = Command::new(which("etcd"))
        .args([
            "--name",
            "test",
            "--data-dir",
            &dir.join("etcd").to_string_lossy(),
            "--listen-client-urls",
            &format!("http://127.0.0.1:{client}"),
            "--advertise-client-urls",
            &format!("http://127.0.0.1:{client}"),
            "--listen-peer-urls",
            &format!("http://127.0.0.1:{peer}"),
            "--initial-advertise-peer-urls",
            &format!("http://127.0.0.1:{peer}"),
            "--initial-cluster",
            &format!("test=http://127.0.0.1:{peer}"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("etcd");
    (Server(child), format!("127.0.0.1:{client}"))
}

/// The node ids registered under `prefix`.
async fn registered(etcd: &str, prefix: &str) -> Option<Vec<u64>> {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let body = serde_json::json!({"key": b64(&format!("{prefix}/")), "range_end": b64(&format!("{prefix}0"))});
    let resp = http()
        .post(format!("http://{etcd}/v3/kv/range"))
        .json(&body)
        .send()
        .await
        .ok()?;
    let v: Value = resp.json().await.ok()?;
    let mut ids: Vec<u64> = v["kvs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|kv| {
            let value = base64::engine::general_purpose::STANDARD
                .decode(kv["value"].as_str()?)
                .ok()?;
            serde_json::from_slice::<Value>(&value).ok()?["node_id"].as_u64()
        })
        .collect();
    ids.sort_unstable();
    Some(ids)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_register_in_etcd_and_clusters_of_other_prefixes_stay_apart() {
    let root = tempfile::tempdir().expect("dir");
    let (_etcd, etcd_addr) = etcd(root.path());
    eventually(Duration::from_secs(30), "etcd", || async {
        registered(&etcd_addr, "/probe").await.map(|_| ())
    })
    .await;
    let start = |prefix: &str, ids: &[u64], expect: &str| -> Vec<Proc> {
        let flags = args(&[
            "--discover",
            &format!("etcd:{etcd_addr}/{prefix}"),
            "--bootstrap-expect",
            expect,
        ]);
        ids.iter()
            .map(|id| Proc::start(&root.path().join(prefix), *id, &flags))
            .collect()
    };
    // Two clusters side by side, node ids overlapping.
    let mut prod = start("wire/prod", &[1, 2, 3], "3");
    let staging = start("wire/staging", &[1, 2], "2");
    formed(&prod, 3).await;
    formed(&staging, 2).await;
    assert_eq!(bootstraps(&prod), 1);
    assert_eq!(bootstraps(&staging), 1);
    assert_eq!(
        registered(&etcd_addr, "/wire/prod").await,
        Some(vec![1, 2, 3])
    );
    assert_eq!(
        registered(&etcd_addr, "/wire/staging").await,
        Some(vec![1, 2])
    );

    // A clean shutdown deregisters at once (no lease to wait out); the restart registers
    // again and is a member again.
    let leader = formed(&prod, 3).await;
    let node = prod
        .iter_mut()
        .find(|p| p.id != leader)
        .expect("a follower");
    let id = node.id;
    node.terminate();
    let left: Vec<u64> = [1, 2, 3].into_iter().filter(|i| *i != id).collect();
    eventually(Duration::from_secs(10), "the deregistration", || {
        let addr = etcd_addr.clone();
        let left = left.clone();
        async move { (registered(&addr, "/wire/prod").await? == left).then_some(()) }
    })
    .await;
    node.restart(&[
        "--discover".to_string(),
        format!("etcd:{etcd_addr}/wire/prod"),
        "--bootstrap-expect".into(),
        "3".into(),
    ]);
    eventually(Duration::from_secs(20), "the registration again", || {
        let addr = etcd_addr.clone();
        async move { (registered(&addr, "/wire/prod").await? == vec![1, 2, 3]).then_some(()) }
    })
    .await;
    formed(&prod, 3).await;
    assert_eq!(bootstraps(&prod), 1);
}
