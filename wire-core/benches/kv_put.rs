//! Concurrent PUTs against a 3-node Wire cluster and, in the same run, a 3-member etcd
//! cluster, both on 127.0.0.1 and both acknowledging a write only once it is fsynced on a
//! majority. Prints ops/s and p50/p99 latency for each and the ratio.
//!
//! The rounds alternate between the two clusters (`WIRE_BENCH_ROUNDS`, 2 by default).
//!
//! Run with `make bench-kv` (installs Debian's etcd-server if missing), or
//! `cargo bench -p wire-core --bench kv_put`. Settings: `WIRE_BENCH_CLIENTS` (64),
//! `WIRE_BENCH_SECS` (10), `WIRE_BENCH_VALUE_BYTES` (100), `WIRE_BENCH_NODES` (3),
//! `WIRE_BENCH_ONLY=wire` (skip etcd), `WIRE_BENCH_DIR` (keep data and logs there),
//! `ETCD_BIN` (etcd).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Child processes killed when dropped.
struct Procs(Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn spawn(cmd: &mut Command, log: &Path) -> Child {
    let out = std::fs::File::create(log).expect("log file");
    let err = out.try_clone().expect("log file");
    cmd.stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| panic!("starting {cmd:?}: {e}"))
}

async fn wait_ok(client: &reqwest::Client, url: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = client.get(url).send().await {
            if r.status().is_success() {
                return;
            }
        }
        assert!(Instant::now() < deadline, "{what} did not come up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn start_wire(root: &Path, client: &reqwest::Client) -> (Procs, Vec<String>) {
    let mut procs = Procs(Vec::new());
    let mut addrs: Vec<String> = Vec::new();
    let nodes = env_or("WIRE_BENCH_NODES", 3);
    for id in 1..=nodes {
        let http = format!("127.0.0.1:{}", free_port());
        let raft = format!("127.0.0.1:{}", free_port());
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_wire"));
        cmd.args(["node", "--node-id", &id.to_string(), "--http-addr", &http])
            .args(["--raft-addr", &raft, "--log-level", "warn"])
            // Three nodes share the machine: one runtime thread each (etcd keeps its default
            // GOMAXPROCS, which measured faster here than GOMAXPROCS=1).
            .args(["--worker-threads", "1"])
            .arg("--data-dir")
            .arg(root.join(format!("wire{id}")));
        if id == 1 {
            cmd.arg("--bootstrap");
        } else {
            cmd.args(["--join", addrs[0].as_str()]);
        }
        procs
            .0
            .push(spawn(&mut cmd, &root.join(format!("wire{id}.log"))));
        wait_ok(client, &format!("http://{http}/ready"), "wire node").await;
        addrs.push(http);
    }
    // Wait until the leader lists three voters.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s: serde_json::Value = client
            .get(format!("http://{}/status", addrs[0]))
            .send()
            .await
            .expect("status")
            .json()
            .await
            .expect("status json");
        let voters = s["members"]
            .as_array()
            .map(|m| m.iter().filter(|m| m["voter"] == true).count())
            .unwrap_or(0);
        if voters == nodes as usize {
            break;
        }
        assert!(Instant::now() < deadline, "wire cluster did not form");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (procs, addrs)
}

async fn start_etcd(root: &Path, client: &reqwest::Client) -> (Procs, Vec<String>) {
    let bin = std::env::var("ETCD_BIN").unwrap_or_else(|_| "etcd".into());
    let peers: Vec<(String, String)> = (1..=3)
        .map(|i| (format!("e{i}"), format!("http://127.0.0.1:{}", free_port())))
        .collect();
    let initial: Vec<String> = peers.iter().map(|(n, u)| format!("{n}={u}")).collect();
    let initial = initial.join(",");
    let mut procs = Procs(Vec::new());
    let mut addrs = Vec::new();
    for (name, peer_url) in &peers {
        let client_addr = format!("127.0.0.1:{}", free_port());
        let client_url = format!("http://{client_addr}");
        let mut cmd = Command::new(&bin);
        cmd.args(["--name", name])
            .arg("--data-dir")
            .arg(root.join(name))
            .args(["--listen-client-urls", &client_url])
            .args(["--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", peer_url])
            .args(["--initial-advertise-peer-urls", peer_url])
            .args(["--initial-cluster", &initial])
            .args(["--initial-cluster-state", "new"])
            .args(["--initial-cluster-token", "wire-bench"])
            .args(["--log-level", "warn"]);
        procs
            .0
            .push(spawn(&mut cmd, &root.join(format!("{name}.log"))));
        addrs.push(client_addr);
    }
    for a in &addrs {
        wait_ok(client, &format!("http://{a}/health"), "etcd member").await;
    }
    (procs, addrs)
}

#[derive(Clone, Copy)]
enum Target {
    Wire,
    Etcd,
}

struct Outcome {
    ops: u64,
    errors: u64,
    elapsed: Duration,
    latencies_us: Vec<u64>,
}

impl Outcome {
    fn empty() -> Outcome {
        Outcome {
            ops: 0,
            errors: 0,
            elapsed: Duration::ZERO,
            latencies_us: Vec::new(),
        }
    }

    /// Adds another round's results.
    fn absorb(&mut self, other: Outcome) {
        self.ops += other.ops;
        self.errors += other.errors;
        self.elapsed += other.elapsed;
        self.latencies_us.extend(other.latencies_us);
        self.latencies_us.sort_unstable();
    }

    fn ops_per_sec(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }

    fn percentile(&self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return f64::NAN;
        }
        let i = ((self.latencies_us.len() as f64 - 1.0) * p).round() as usize;
        self.latencies_us[i] as f64 / 1000.0
    }
}

/// A minimal HTTP/1.1 keep-alive connection. The load generator shares the machine with the
/// clusters it measures, so it must cost far less per request than they do (a general client
/// such as reqwest spends several times more CPU per request than this).
struct Conn {
    stream: BufReader<TcpStream>,
    line: String,
}

impl Conn {
    async fn connect(addr: &str) -> std::io::Result<Conn> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream: BufReader::new(stream),
            line: String::new(),
        })
    }

    async fn read_line(&mut self) -> std::io::Result<&str> {
        self.line.clear();
        if self.stream.read_line(&mut self.line).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        Ok(self.line.trim_end())
    }

    /// Sends one request and reads the whole response; returns its status code.
    async fn send(&mut self, request: &[u8]) -> std::io::Result<u16> {
        self.stream.get_mut().write_all(request).await?;
        let status = self
            .read_line()
            .await?
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let (mut length, mut chunked) = (0usize, false);
        loop {
            let header = self.read_line().await?.to_ascii_lowercase();
            if header.is_empty() {
                break;
            }
            if let Some(v) = header.strip_prefix("content-length:") {
                length = v.trim().parse().unwrap_or(0);
            } else if header.starts_with("transfer-encoding:") && header.contains("chunked") {
                chunked = true;
            }
        }
        if chunked {
            loop {
                let size = usize::from_str_radix(self.read_line().await?, 16).unwrap_or(0);
                let mut chunk = vec![0; size + 2];
                self.stream.read_exact(&mut chunk).await?;
                if size == 0 {
                    break;
                }
            }
        } else {
            let mut body = vec![0; length];
            self.stream.read_exact(&mut body).await?;
        }
        Ok(status)
    }
}

fn request(target: Target, addr: &str, key: &str, value: &str) -> Vec<u8> {
    match target {
        Target::Wire => format!(
            "PUT /kv/{key} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\n\r\n{value}",
            value.len()
        ),
        Target::Etcd => {
            let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
            let body = format!(r#"{{"key":"{}","value":"{}"}}"#, b64(key), b64(value));
            format!(
                "POST /v3/kv/put HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
        }
    }
    .into_bytes()
}

async fn drive(
    target: Target,
    addrs: Vec<String>,
    clients: u64,
    secs: u64,
    value_bytes: usize,
) -> Outcome {
    let value = "v".repeat(value_bytes);
    let addrs = Arc::new(addrs);
    // Warm up connections and leadership for a second, then measure.
    let warmup = Duration::from_secs(1);
    let start = Instant::now();
    let measure_from = start + warmup;
    let stop_at = measure_from + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (addrs, value) = (addrs.clone(), value.clone());
        tasks.push(tokio::spawn(async move {
            let addr = &addrs[(c as usize) % addrs.len()];
            let mut lat = Vec::new();
            let (mut ops, mut errors) = (0u64, 0u64);
            let mut conn: Option<Conn> = None;
            let mut i = 0u64;
            loop {
                let now = Instant::now();
                if now >= stop_at {
                    break;
                }
                let key = format!("bench-{c}-{i}");
                i += 1;
                let req = request(target, addr, &key, &value);
                let ok = async {
                    if conn.is_none() {
                        conn = Some(Conn::connect(addr).await?);
                    }
                    match &mut conn {
                        Some(c) => c.send(&req).await,
                        None => Ok(0),
                    }
                }
                .await;
                let ok = match ok {
                    Ok(status) => (200..300).contains(&status),
                    Err(_) => {
                        conn = None;
                        false
                    }
                };
                if now >= measure_from {
                    if ok {
                        ops += 1;
                        lat.push(now.elapsed().as_micros() as u64);
                    } else {
                        errors += 1;
                    }
                }
            }
            (ops, errors, lat)
        }));
    }
    let mut outcome = Outcome {
        ops: 0,
        errors: 0,
        elapsed: Duration::from_secs(secs),
        latencies_us: Vec::new(),
    };
    for t in tasks {
        let (ops, errors, lat) = t.await.expect("client task");
        outcome.ops += ops;
        outcome.errors += errors;
        outcome.latencies_us.extend(lat);
    }
    outcome.latencies_us.sort_unstable();
    outcome
}

/// CPU seconds (user + system) each process used over the whole run, from /proc.
fn report_cpu(name: &str, procs: &Procs) {
    let ticks = 100.0; // USER_HZ on Linux
    let cpu: Vec<String> = procs
        .0
        .iter()
        .map(|c| {
            let stat =
                std::fs::read_to_string(format!("/proc/{}/stat", c.id())).unwrap_or_default();
            let fields: Vec<&str> = stat
                .rsplit(')')
                .next()
                .unwrap_or("")
                .split_whitespace()
                .collect();
            let t: f64 = fields
                .get(11)
                .and_then(|u| u.parse::<f64>().ok())
                .unwrap_or(0.0)
                + fields
                    .get(12)
                    .and_then(|s| s.parse::<f64>().ok())
                    .unwrap_or(0.0);
            format!("{:.1}s", t / ticks)
        })
        .collect();
    println!("{name:<6} cpu per node: {}", cpu.join(" "));
}

fn report(name: &str, o: &Outcome) {
    println!(
        "{name:<6} {:>10.0} ops/s   p50 {:>7.2} ms   p99 {:>7.2} ms   ({} ok, {} errors)",
        o.ops_per_sec(),
        o.percentile(0.50),
        o.percentile(0.99),
        o.ops,
        o.errors
    );
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing: run only for bench.
    if !std::env::args().any(|a| a == "--bench") {
        println!("kv_put: run with `cargo bench` (skipped under `cargo test`)");
        return;
    }
    let clients = env_or("WIRE_BENCH_CLIENTS", 64);
    let secs = env_or("WIRE_BENCH_SECS", 10);
    let value_bytes = env_or("WIRE_BENCH_VALUE_BYTES", 100) as usize;
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let root = tempfile::tempdir().expect("temp dir");
        // WIRE_BENCH_DIR keeps data dirs and logs for inspection.
        let kept = std::env::var("WIRE_BENCH_DIR").ok().map(std::path::PathBuf::from);
        let root_path = kept.clone().unwrap_or_else(|| root.path().to_path_buf());
        let http = reqwest::Client::builder().no_proxy().build().expect("client");
        println!("kv_put: {clients} clients, {secs}s each, {value_bytes}-byte values, 3 nodes each on 127.0.0.1");

        // Both clusters stay up and the rounds alternate (wire, etcd, wire, etcd, ...), so
        // that a slow spell of the machine hits both alike.
        let only_wire = std::env::var("WIRE_BENCH_ONLY").as_deref() == Ok("wire");
        let rounds = env_or("WIRE_BENCH_ROUNDS", 2);
        let (wire_procs, wire_addrs) = start_wire(&root_path, &http).await;
        let etcd_cluster = if only_wire {
            None
        } else {
            Some(start_etcd(&root_path, &http).await)
        };
        let mut wire = Outcome::empty();
        let mut etcd = Outcome::empty();
        for round in 1..=rounds {
            let w = drive(Target::Wire, wire_addrs.clone(), clients, secs, value_bytes).await;
            println!("round {round}: wire {:.0} ops/s", w.ops_per_sec());
            wire.absorb(w);
            if let Some((_, addrs)) = &etcd_cluster {
                let e = drive(Target::Etcd, addrs.clone(), clients, secs, value_bytes).await;
                println!("round {round}: etcd {:.0} ops/s", e.ops_per_sec());
                etcd.absorb(e);
            }
        }
        report_cpu("wire", &wire_procs);
        report("wire", &wire);
        let Some((etcd_procs, _)) = etcd_cluster else {
            return;
        };
        report_cpu("etcd", &etcd_procs);
        report("etcd", &etcd);
        println!(
            "ratio  wire/etcd ops/s = {:.2}x   p99 wire/etcd = {:.2}",
            wire.ops_per_sec() / etcd.ops_per_sec(),
            wire.percentile(0.99) / etcd.percentile(0.99)
        );
    });
}
