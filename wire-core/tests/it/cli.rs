//! The `wire` program: client commands against a running node, config files, validation
//! errors, JSON logs.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::support::{eventually, free_port, http, Embedded};

fn wire(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_wire"))
        .args(args)
        .output()
        .expect("run wire")
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A TOML config of a bootstrapping node on free ports with its data in `dir`, and `more`
/// lines: the file and the node's HTTP address.
fn config_file(dir: &std::path::Path, node_id: u64, more: &str) -> (std::path::PathBuf, String) {
    let http_addr = format!("127.0.0.1:{}", free_port());
    let config = dir.join("node.toml");
    std::fs::write(
        &config,
        format!(
            "node_id = {node_id}\nbootstrap = true\nhttp_addr = \"{http_addr}\"\nraft_addr = \"127.0.0.1:{}\"\ndata_dir = \"{}\"\n{more}",
            free_port(),
            dir.join("data").display()
        ),
    )
    .expect("config file");
    (config, http_addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_and_cluster_commands_talk_to_a_node() {
    let n = Embedded::start().await;
    let addr = n.node.http_addr().to_string();
    let run = |args: Vec<&str>| {
        let mut full = args;
        full.extend(["--addr", addr.as_str()]);
        wire(&full)
    };

    // put / get / list / delete round trip, keys with slashes and spaces included.
    let o = run(vec!["kv", "put", "cfg/a b", "one"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(vec!["kv", "get", "cfg/a b"]);
    assert_eq!(stdout(&o).trim_end(), "one");
    let o = run(vec!["kv", "get", "cfg/a b", "--consistency", "local"]);
    assert_eq!(stdout(&o).trim_end(), "one");
    run(vec!["kv", "put", "cfg/c", "two"]);
    let o = run(vec!["kv", "list", "--prefix", "cfg/", "--limit", "1"]);
    let page: Value = serde_json::from_str(&stdout(&o)).expect("list JSON");
    assert_eq!(page["items"][0]["key"], "cfg/a b");
    assert_eq!(page["more"], true);
    let o = run(vec!["kv", "delete", "cfg/a b"]);
    assert!(o.status.success());
    let o = run(vec!["kv", "get", "cfg/a b"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("not found"), "{}", stderr(&o));

    // Cluster status, and a refused removal reported with its reason and a failing exit code.
    let o = run(vec!["cluster", "status"]);
    let status: Value = serde_json::from_str(&stdout(&o)).expect("status JSON");
    assert_eq!(status["role"], "leader");
    let o = run(vec!["cluster", "remove", "1"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("only voter"), "{}", stderr(&o));
    n.node.shutdown().await.unwrap();
}

#[test]
fn invalid_configuration_lists_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("node.toml");
    std::fs::write(
        &config,
        "node_id = 0\nhttp_addr = \"nowhere\"\nbootstrap = true\njoin = [\"127.0.0.1:8081\"]\n",
    )
    .unwrap();
    let o = wire(&[
        "node",
        "--config",
        config.to_str().unwrap(),
        "--raft-addr",
        "also-nowhere",
        "--data-dir",
        dir.path().join("data").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    for field in ["node_id", "http_addr", "raft_addr", "bootstrap"] {
        assert!(
            err.contains(&format!("  {field}:")),
            "missing {field} in:\n{err}"
        );
    }
    assert!(err.contains("4 problems"), "{err}");

    // An unknown key in the file is named.
    std::fs::write(&config, "node_id = 1\nhttp_adress = \"127.0.0.1:1\"\n").unwrap();
    let o = wire(&["node", "--config", config.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("http_adress"), "{}", stderr(&o));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_runs_from_a_config_file_with_json_logs() {
    let dir = tempfile::tempdir().unwrap();
    let (config, http_addr) = config_file(dir.path(), 7, "");
    let log = std::fs::File::create(dir.path().join("node.log")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_wire"))
        .args([
            "node",
            "--config",
            config.to_str().unwrap(),
            "--log-format",
            "json",
        ])
        .stderr(log)
        .spawn()
        .unwrap();
    let status: Value = eventually(Duration::from_secs(15), "the node", || async {
        let r = http()
            .get(format!("http://{http_addr}/status"))
            .send()
            .await
            .ok()?;
        let s: Value = r.json().await.ok()?;
        (s["role"] == "leader").then_some(s)
    })
    .await;
    assert_eq!(status["node_id"], 7);
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let exit = child.wait().unwrap();
    assert!(
        exit.success(),
        "SIGTERM should stop the node cleanly: {exit:?}"
    );
    let logs = std::fs::read_to_string(dir.path().join("node.log")).unwrap();
    let lines: Vec<&str> = logs.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty());
    for line in &lines {
        let v: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v["level"].is_string(), "{line}");
    }
    assert!(logs.contains("node stopped"), "{logs}");
}

/// `wire user` makes a password hash and a token; a node takes them from a TOML config
/// with inline users, and the client commands sign in with `--user`, `WIRE_USER` or
/// `--token` (401 without, 403 naming the permission a user lacks).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_makes_user_secrets_and_signs_in_with_them() {
    use std::io::Write;
    let o = wire(&["user", "new-token"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let mut lines = out.lines();
    let token = lines.next().expect("token").to_string();
    let token_line = lines.next().expect("token_sha256 line").to_string();
    assert!(token_line.starts_with("token_sha256 = \""), "{token_line}");

    let mut child = Command::new(env!("CARGO_BIN_EXE_wire"))
        .args(["user", "hash-password"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("hash-password");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"ops-password\n")
        .expect("password");
    let o = child.wait_with_output().expect("hash");
    let hash = stdout(&o).trim().to_string();
    assert!(hash.starts_with("$argon2id$"), "{hash}");

    let dir = tempfile::tempdir().unwrap();
    let (config, http_addr) = config_file(
        dir.path(),
        1,
        &format!(
            "cluster_secret = \"cli-test-cluster-secret\"\n\n[[users]]\nname = \"ops\"\npassword_hash = \"{hash}\"\npermissions = [\"read\", \"write\", \"status\"]\n\n[[users]]\nname = \"bot\"\n{token_line}\npermissions = [\"read\"]\n"
        ),
    );
    let mut node = Command::new(env!("CARGO_BIN_EXE_wire"))
        .args(["node", "--config", config.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("node");
    let health = format!("http://{http_addr}/health");
    eventually(Duration::from_secs(20), "the node", || async {
        let r = http().get(&health).send().await.ok()?;
        r.status().is_success().then_some(())
    })
    .await;
    let run = |args: &[&str], env: &[(&str, &str)]| {
        Command::new(env!("CARGO_BIN_EXE_wire"))
            .args(args)
            .args(["--addr", &http_addr])
            .envs(env.iter().copied())
            .output()
            .expect("run wire")
    };
    let o = run(&["kv", "put", "k", "v"], &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("401"), "{}", stderr(&o));
    let o = run(
        &[
            "kv",
            "put",
            "k",
            "v",
            "--user",
            "ops",
            "--password",
            "ops-password",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(&["kv", "get", "k"], &[("WIRE_USER", "ops:ops-password")]);
    assert_eq!(stdout(&o).trim_end(), "v", "{}", stderr(&o));
    let o = run(&["kv", "get", "k", "--token", &token], &[]);
    assert_eq!(stdout(&o).trim_end(), "v", "{}", stderr(&o));
    let o = run(&["kv", "put", "k", "w", "--token", &token], &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("403") && stderr(&o).contains("'write'"),
        "{}",
        stderr(&o)
    );
    let o = run(&["kv", "get", "k", "--user", "ops"], &[]);
    assert!(
        stderr(&o).contains("no password for user 'ops'"),
        "{}",
        stderr(&o)
    );
    let _ = node.kill();
    let _ = node.wait();
}
