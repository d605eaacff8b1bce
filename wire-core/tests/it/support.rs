//! Test fixtures: real `wire node` processes on free loopback ports with temp data dirs, an
//! in-process node, and small HTTP helpers.

#![allow(dead_code)]

use std::future::Future;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

/// A free TCP port on 127.0.0.1 (free when asked; tests start at once).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Retries `f` until it yields `Some`, or panics naming `what` after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(15))
        .build()
        .expect("client")
}

/// GET `url`: the body as text.
pub async fn get_text(url: &str) -> String {
    http()
        .get(url)
        .send()
        .await
        .expect("GET")
        .text()
        .await
        .expect("body")
}

/// GET `url`: the body as JSON.
pub async fn get_json(url: &str) -> Value {
    http()
        .get(url)
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON body")
}

/// POST `body` as JSON to `url`: the answer as JSON.
pub async fn post_json(url: &str, body: &Value) -> Value {
    http()
        .post(url)
        .json(body)
        .send()
        .await
        .expect("POST")
        .json()
        .await
        .expect("JSON body")
}

/// GET `url`: the body as JSON, or `None` while it does not answer with JSON.
pub async fn try_json(url: &str) -> Option<Value> {
    http().get(url).send().await.ok()?.json().await.ok()
}

/// The sum of the source positions in the last committed checkpoints of a pipeline, from its
/// status at `status_url` (`None` while it does not answer): a Kafka source's next offsets, a
/// file source's bytes, a generator's next numbers. Output a sink committed is covered by
/// these positions, so once they cover the whole input nothing more can appear.
pub async fn checkpointed_positions(status_url: &str) -> Option<u64> {
    let s = try_json(status_url).await?;
    let mut total = 0;
    for part in s["partitions"].as_array()? {
        for splits in part["positions"].as_object()?.values() {
            for offset in splits.as_object()?.values() {
                total += offset.as_u64()?;
            }
        }
    }
    Some(total)
}

/// Waits until the pipeline at `status_url` stops reading: its source's record count is the
/// same over five polls 200 ms apart (it fails if the source keeps going for 20 s).
pub async fn wait_stalled(status_url: &str) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    let (mut last, mut same) = (None, 0);
    loop {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for the source to stall"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        let read =
            async { try_json(status_url).await?["steps"]["source0"]["records_out"].as_u64() };
        let Some(now) = read.await else { continue };
        if last == Some(now) {
            same += 1;
            if same >= 4 {
                return now;
            }
        } else {
            (last, same) = (Some(now), 0);
        }
    }
}

/// POSTs a pipeline spec to `url` (a node's `/pipelines`), asserting it is created.
pub async fn create_pipeline(url: &str, spec: &Value) {
    let r = http().post(url).json(spec).send().await.expect("POST");
    let code = r.status();
    let body = r.text().await.unwrap_or_default();
    assert_eq!(code, 201, "{body}");
}

/// Sends `req`: the answer's status code.
pub async fn status(req: reqwest::RequestBuilder) -> u16 {
    req.send().await.expect("request").status().as_u16()
}

/// Sends `req`: the answer as JSON.
pub async fn json(req: reqwest::RequestBuilder) -> Value {
    req.send()
        .await
        .expect("request")
        .json()
        .await
        .expect("JSON body")
}

/// One `wire node` process.
pub struct Proc {
    pub id: u64,
    pub http: String,
    pub raft: String,
    pub dir: PathBuf,
    pub log: PathBuf,
    child: Option<Child>,
    /// Standard output goes to a pipe that nobody reads (a stalled consumer).
    stalled_stdout: bool,
    /// How the helpers reach the node (credentials, TLS).
    pub access: Access,
}

/// How tests reach nodes with users or TLS.
#[derive(Clone, Default)]
pub struct Access {
    /// The `Authorization` header the helpers send, for nodes with users.
    pub auth: Option<String>,
    /// A client trusting the cluster's CA, for nodes with TLS (https).
    pub tls: Option<reqwest::Client>,
}

/// Flags every test node gets: short Raft timers so elections settle fast.
const FAST: &[&str] = &[
    "--heartbeat-ms",
    "100",
    "--election-timeout-min-ms",
    "500",
    "--election-timeout-max-ms",
    "1000",
];

impl Proc {
    fn spawn(&mut self, extra: &[String]) {
        if let Some(dir) = self.log.parent() {
            std::fs::create_dir_all(dir).expect("node dir");
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let log2 = log.try_clone().expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_wire"))
            .arg("node")
            .args(["--node-id", &self.id.to_string()])
            .args(["--http-addr", &self.http])
            .args(["--raft-addr", &self.raft])
            .arg("--data-dir")
            .arg(&self.dir)
            .args(FAST)
            .args(extra)
            .env("RUST_LOG", "info,openraft=warn")
            .stdin(Stdio::null())
            .stdout(if self.stalled_stdout {
                Stdio::piped()
            } else {
                Stdio::from(log)
            })
            .stderr(log2)
            .spawn()
            .expect("spawn wire node");
        self.child = Some(child);
    }

    /// Starts node `id` under `root` with fresh ports.
    pub fn start(root: &std::path::Path, id: u64, extra: &[String]) -> Proc {
        Self::start_with(root, id, extra, false)
    }

    /// Starts node `id` with its standard output on a pipe that is never read.
    pub fn start_stalled_stdout(root: &std::path::Path, id: u64, extra: &[String]) -> Proc {
        Self::start_with(root, id, extra, true)
    }

    /// Starts node `id` on the given addresses.
    pub fn start_at(
        root: &std::path::Path,
        id: u64,
        http: String,
        raft: String,
        extra: &[String],
    ) -> Proc {
        let mut p = Proc {
            stalled_stdout: false,
            id,
            http,
            raft,
            dir: root.join(format!("node{id}")),
            log: root.join(format!("node{id}.log")),
            child: None,
            access: Access::default(),
        };
        p.spawn(extra);
        p
    }

    fn start_with(root: &std::path::Path, id: u64, extra: &[String], stalled_stdout: bool) -> Proc {
        let mut p = Proc {
            stalled_stdout,
            id,
            http: format!("127.0.0.1:{}", free_port()),
            raft: format!("127.0.0.1:{}", free_port()),
            dir: root.join(format!("node{id}")),
            log: root.join(format!("node{id}.log")),
            child: None,
            access: Access::default(),
        };
        p.spawn(extra);
        p
    }

    /// Starts the process again with the same id, addresses and data dir.
    pub fn restart(&mut self, extra: &[String]) {
        assert!(self.child.is_none(), "node {} is still running", self.id);
        self.spawn(extra);
    }

    /// `kill -9`.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then wait for the process to exit.
    pub fn terminate(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(15);
            loop {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                if Instant::now() > deadline {
                    let _ = c.kill();
                    let _ = c.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// The process id, while it runs.
    /// Sends `signal` (`STOP`, `CONT`, ...) to the process.
    pub fn signal(&self, signal: &str) {
        let pid = self.pid().expect("a running node");
        let ok = Command::new("kill")
            .args([&format!("-{signal}"), &pid.to_string()])
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill -{signal} {pid}");
    }

    /// A counter or gauge of this node's `/metrics` (`None` while it does not answer).
    pub async fn metric(&self, name: &str) -> Option<f64> {
        let text = http()
            .get(self.url("/metrics"))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Resident memory in KiB (from /proc), while it runs.
    pub fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    }

    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    pub fn url(&self, path: &str) -> String {
        let scheme = if self.access.tls.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}{}", self.http, path)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A request to `path` with this node's credentials, if it has users.
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let client = self.access.tls.clone().unwrap_or_else(http);
        let req = client.request(method, self.url(path));
        match &self.access.auth {
            Some(a) => req.header("authorization", a),
            None => req,
        }
    }

    pub async fn status(&self) -> Option<Value> {
        let resp = self
            .request(reqwest::Method::GET, "/status")
            .send()
            .await
            .ok()?;
        resp.json().await.ok()
    }

    pub async fn put(&self, key: &str, value: &str) -> reqwest::Result<reqwest::Response> {
        self.request(reqwest::Method::PUT, &format!("/kv/{key}"))
            .body(value.to_string())
            .send()
            .await
    }

    /// A read at `consistency`: `Some(value)`, or `None` if the key is absent. Panics on an
    /// error answer.
    pub async fn get(&self, key: &str, consistency: &str) -> Option<String> {
        let resp = self
            .request(
                reqwest::Method::GET,
                &format!("/kv/{key}?consistency={consistency}"),
            )
            .send()
            .await
            .expect("get");
        match resp.status().as_u16() {
            200 => Some(resp.text().await.expect("body")),
            404 => None,
            s => panic!(
                "GET {key} on node {} answered {s}: {}",
                self.id,
                resp.text().await.unwrap_or_default()
            ),
        }
    }
}

impl Proc {
    /// The value if the node answers 200 now; `None` on any error (node down, key absent).
    pub async fn try_get(&self, key: &str, consistency: &str) -> Option<String> {
        let resp = self
            .request(
                reqwest::Method::GET,
                &format!("/kv/{key}?consistency={consistency}"),
            )
            .send()
            .await
            .ok()?;
        if resp.status() != 200 {
            return None;
        }
        resp.text().await.ok()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A cluster of `wire node` processes: node 1 bootstraps, the others join through it.
pub struct Cluster {
    pub nodes: Vec<Proc>,
    pub root: TempDir,
}

impl Drop for Cluster {
    /// On a failing test, shows the tail of every node's log (and, with `WIRE_KEEP_LOGS=<dir>`,
    /// copies the logs there).
    fn drop(&mut self) {
        if std::thread::panicking() {
            if let Ok(dir) = std::env::var("WIRE_KEEP_LOGS") {
                for p in &self.nodes {
                    let _ = std::fs::copy(&p.log, format!("{dir}/node{}.log", p.id));
                }
            }
            for p in &self.nodes {
                let text = p.log_text();
                let lines: Vec<&str> = text.lines().collect();
                let tail = lines[lines.len().saturating_sub(40)..].join("\n");
                eprintln!("---- node {} log (last 40 lines) ----\n{tail}", p.id);
            }
        }
    }
}

impl Cluster {
    pub async fn start(n: u64, extra: &[&str]) -> Cluster {
        Self::start_as(n, extra, Access::default()).await
    }

    /// A cluster whose nodes have users or TLS: the helpers reach them with `access`.
    pub async fn start_as(n: u64, extra: &[&str], access: Access) -> Cluster {
        let root = tempfile::tempdir().expect("temp dir");
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let mut first_args = extra.clone();
        first_args.push("--bootstrap".into());
        let mut first = Proc::start(root.path(), 1, &first_args);
        first.access = access.clone();
        let mut cluster = Cluster {
            nodes: vec![first],
            root,
        };
        cluster.wait_leader(Duration::from_secs(20)).await;
        for id in 2..=n {
            let mut args = extra.clone();
            args.push("--join".into());
            args.push(cluster.nodes[0].http.clone());
            let mut p = Proc::start(cluster.root.path(), id, &args);
            p.access = access.clone();
            cluster.nodes.push(p);
            cluster
                .wait_members(id as usize, Duration::from_secs(30))
                .await;
        }
        cluster
    }

    pub fn node(&self, id: u64) -> &Proc {
        self.nodes.iter().find(|p| p.id == id).expect("node")
    }

    pub fn node_mut(&mut self, id: u64) -> &mut Proc {
        self.nodes.iter_mut().find(|p| p.id == id).expect("node")
    }

    /// Waits until some running node reports itself leader; returns its id.
    pub async fn wait_leader(&self, timeout: Duration) -> u64 {
        eventually(timeout, "a leader", || async {
            for p in &self.nodes {
                if let Some(s) = p.status().await {
                    if s["role"] == "leader" {
                        return s["node_id"].as_u64();
                    }
                }
            }
            None
        })
        .await
    }

    /// Waits until node 1's status lists `n` voters.
    pub async fn wait_members(&self, n: usize, timeout: Duration) {
        eventually(timeout, "members", || async {
            for p in &self.nodes {
                if let Some(s) = p.status().await {
                    if s["role"] == "leader" {
                        let voters = s["members"]
                            .as_array()?
                            .iter()
                            .filter(|m| m["voter"] == true)
                            .count();
                        return (voters == n).then_some(());
                    }
                }
            }
            None
        })
        .await
    }
}

/// An in-process single node with its temp dir.
pub struct Embedded {
    pub node: wire_core::Node,
    pub dir: TempDir,
}

impl Embedded {
    pub async fn start() -> Embedded {
        let dir = tempfile::tempdir().expect("temp dir");
        let node = wire_core::Node::start(wire_core::NodeConfig::single(dir.path(), 1))
            .await
            .expect("start node");
        eventually(Duration::from_secs(10), "leader", || async {
            node.is_ready().then_some(())
        })
        .await;
        Embedded { node, dir }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.node.http_addr(), path)
    }
}

/// Runs `tests/services/<script> <action>` with `env` (ports, run dir); its standard output
/// (for `start`, the server's address). Panics with the script's error output if it fails.
pub fn service(script: &str, action: &str, env: &[(String, String)]) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/services")
        .join(script);
    let out = std::process::Command::new("bash")
        .arg(&path)
        .arg(action)
        .envs(env.iter().cloned())
        .output()
        .unwrap_or_else(|e| panic!("running tests/services/{script}: {e}"));
    assert!(
        out.status.success(),
        "tests/services/{script} {action} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The `path` of every problem in an `invalid_spec` answer, in order.
pub fn error_paths(body: &Value) -> Vec<&str> {
    body["errors"]
        .as_array()
        .map(|errors| errors.iter().filter_map(|e| e["path"].as_str()).collect())
        .unwrap_or_default()
}
