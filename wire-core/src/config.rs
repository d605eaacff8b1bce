//! Node configuration: the options of `wire node` (flags or a TOML file given by `--config`),
//! their defaults (defined here once), and validation that reports every problem at once.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::consensus::election::ElectionSettings;

/// Defaults, defined once.
pub mod defaults {
    pub const NODE_ID: u64 = 1;
    pub const HTTP_ADDR: &str = "127.0.0.1:8081";
    pub const RAFT_ADDR: &str = "127.0.0.1:9081";
    pub const DATA_DIR: &str = "wire-data";
    pub const HEARTBEAT_MS: u64 = 100;
    pub const ELECTION_TIMEOUT_MIN_MS: u64 = 750;
    pub const ELECTION_TIMEOUT_MAX_MS: u64 = 1500;
    pub const SNAPSHOT_THRESHOLD: u64 = 10_000;
    pub const SNAPSHOT_KEEP_LOGS: u64 = 1_000;
    pub const JOIN_TIMEOUT_SECS: u64 = 60;
    pub const REQUEST_TIMEOUT_MS: u64 = 5_000;
    pub const FAILOVER_AFTER_MS: u64 = 3_000;
}

/// One problem found in a configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct ConfigError {
    /// The option at fault, as named in the TOML file (`--http-addr` is `http_addr`).
    pub field: &'static str,
    /// What is wrong with it.
    pub problem: String,
}

impl ConfigError {
    fn new(field: &'static str, problem: impl Into<String>) -> Self {
        Self {
            field,
            problem: problem.into(),
        }
    }
}

/// The options of a node as given by a user: every field optional, so that a TOML file and
/// command-line flags can be merged (flags win) before validation. Unknown TOML keys are
/// rejected.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct NodeOptions {
    /// This node's id: a positive integer, unique in the cluster [default: 1].
    #[arg(long)]
    pub node_id: Option<u64>,
    /// Address of the public HTTP API [default: 127.0.0.1:8081].
    #[arg(long)]
    pub http_addr: Option<String>,
    /// Address of the node-to-node Raft listener [default: 127.0.0.1:9081].
    #[arg(long)]
    pub raft_addr: Option<String>,
    /// Directory of the node's database; created if missing [default: wire-data].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Start a new single-node cluster with this node as its first member (ignored when the
    /// data dir already holds a cluster).
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub bootstrap: Option<bool>,
    /// HTTP addresses of existing members to join through, tried in turn (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub join: Option<Vec<String>>,
    /// Join as a non-voting learner.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub learner: Option<bool>,
    /// Raft heartbeat interval in milliseconds [default: 100].
    #[arg(long)]
    pub heartbeat_ms: Option<u64>,
    /// Lower bound of the randomized election timeout, in milliseconds [default: 750]: a
    /// voter that has not heard from a leader for a timeout drawn from [min, max] asks for
    /// pre-votes, then campaigns; a heartbeat makes voters refuse others for this long.
    /// At least three heartbeats.
    #[arg(long)]
    pub election_timeout_min_ms: Option<u64>,
    /// Upper bound of the randomized election timeout, in milliseconds [default: 1500].
    #[arg(long)]
    pub election_timeout_max_ms: Option<u64>,
    /// Build a snapshot after this many log entries since the last one [default: 10000].
    #[arg(long)]
    pub snapshot_threshold: Option<u64>,
    /// Log entries kept behind a snapshot for lagging followers [default: 1000].
    #[arg(long)]
    pub snapshot_keep_logs: Option<u64>,
    /// How long to keep trying the `--join` addresses, in seconds [default: 60].
    #[arg(long)]
    pub join_timeout_secs: Option<u64>,
    /// Longest a write or linearizable read may wait for the cluster, in milliseconds
    /// [default: 5000].
    #[arg(long)]
    pub request_timeout_ms: Option<u64>,
    /// How long a member the leader no longer hears from is still trusted, in milliseconds
    /// [default: 3000]; then its pipeline partitions move to live members. At least
    /// election_timeout_max_ms.
    #[arg(long)]
    pub failover_after_ms: Option<u64>,
    /// Threads of the `wire node` process's async runtime [default: one per CPU]. Several
    /// nodes sharing a small machine run faster with fewer (fewer cross-thread wake-ups).
    #[arg(long)]
    pub worker_threads: Option<usize>,
    /// A file of users (TOML `[[users]]`, or JSON when it ends in .json): with users, every
    /// request to the HTTP API must show one (basic auth or a bearer token) with the
    /// permission its route needs.
    #[arg(long)]
    pub users_file: Option<PathBuf>,
    /// Users given inline (`[[users]]` in the TOML config), beside those of `users_file`.
    #[arg(skip)]
    pub users: Option<Vec<crate::auth::UserEntry>>,
    /// A secret shared by every node of the cluster (16+ printable characters): node-to-node
    /// calls without it are refused, and joining needs it. Required with users (unless
    /// node-to-node traffic is mutual TLS).
    #[arg(long, env = "WIRE_CLUSTER_SECRET", hide_env_values = true)]
    pub cluster_secret: Option<String>,
    /// A file holding the cluster secret (its first line).
    #[arg(long)]
    pub cluster_secret_file: Option<PathBuf>,
    /// This node's TLS certificate (PEM, the chain from the node's own first): both
    /// listeners speak TLS. Reloaded when the file changes.
    #[arg(long)]
    pub tls_cert: Option<PathBuf>,
    /// The private key of `tls_cert` (PEM).
    #[arg(long)]
    pub tls_key: Option<PathBuf>,
    /// The CA (PEM) that signed every node's certificate: node-to-node calls are mutual
    /// TLS, and a node whose certificate it did not sign cannot join, replicate or vote.
    #[arg(long)]
    pub tls_ca: Option<PathBuf>,
    /// Find the other nodes instead of --bootstrap/--join: dns:NAME[:PORT],
    /// dns-srv:NAME or etcd:HOST:PORT[,HOST:PORT...]/PREFIX.
    #[arg(long)]
    pub discover: Option<String>,
    /// With --discover: how many nodes to find before the lowest id bootstraps a new cluster
    /// (give every node the same number: the nodes that form the cluster first).
    #[arg(long)]
    pub bootstrap_expect: Option<usize>,
    /// The DNS server of the dns: and dns-srv: modes (IP:PORT) [default: the first
    /// nameserver of /etc/resolv.conf].
    #[arg(long)]
    pub dns_server: Option<String>,
}

impl NodeOptions {
    /// Reads options from a TOML file.
    pub fn from_toml_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::new("config", format!("cannot read {}: {e}", path.display()))
        })?;
        Self::from_toml(&text)
            .map_err(|e| ConfigError::new("config", format!("{}: {}", path.display(), e.problem)))
    }

    /// Parses options from TOML text.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        toml::from_str(text)
            .map_err(|e| ConfigError::new("config", e.to_string().trim_end().to_string()))
    }

    /// Parses options from JSON text.
    pub fn from_json(text: &str) -> Result<Self, ConfigError> {
        serde_json::from_str(text).map_err(|e| ConfigError::new("config", e.to_string()))
    }

    /// Overlays `other` on `self`: fields set in `other` win.
    pub fn merge(self, other: NodeOptions) -> NodeOptions {
        NodeOptions {
            node_id: other.node_id.or(self.node_id),
            http_addr: other.http_addr.or(self.http_addr),
            raft_addr: other.raft_addr.or(self.raft_addr),
            data_dir: other.data_dir.or(self.data_dir),
            bootstrap: other.bootstrap.or(self.bootstrap),
            join: other.join.or(self.join),
            learner: other.learner.or(self.learner),
            heartbeat_ms: other.heartbeat_ms.or(self.heartbeat_ms),
            election_timeout_min_ms: other
                .election_timeout_min_ms
                .or(self.election_timeout_min_ms),
            election_timeout_max_ms: other
                .election_timeout_max_ms
                .or(self.election_timeout_max_ms),
            snapshot_threshold: other.snapshot_threshold.or(self.snapshot_threshold),
            snapshot_keep_logs: other.snapshot_keep_logs.or(self.snapshot_keep_logs),
            join_timeout_secs: other.join_timeout_secs.or(self.join_timeout_secs),
            request_timeout_ms: other.request_timeout_ms.or(self.request_timeout_ms),
            failover_after_ms: other.failover_after_ms.or(self.failover_after_ms),
            worker_threads: other.worker_threads.or(self.worker_threads),
            users_file: other.users_file.or(self.users_file),
            users: other.users.or(self.users),
            cluster_secret: other.cluster_secret.or(self.cluster_secret),
            cluster_secret_file: other.cluster_secret_file.or(self.cluster_secret_file),
            tls_cert: other.tls_cert.or(self.tls_cert),
            tls_key: other.tls_key.or(self.tls_key),
            tls_ca: other.tls_ca.or(self.tls_ca),
            discover: other.discover.or(self.discover),
            bootstrap_expect: other.bootstrap_expect.or(self.bootstrap_expect),
            dns_server: other.dns_server.or(self.dns_server),
        }
    }

    /// Validates the options into a [`NodeConfig`], creating the data dir and checking that
    /// it is writable. Every problem found is returned, not just the first.
    pub fn validate(self) -> Result<NodeConfig, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let node_id = self.node_id.unwrap_or(defaults::NODE_ID);
        if node_id == 0 {
            errors.push(ConfigError::new("node_id", "must be a positive integer"));
        }
        let addr = |field: &'static str,
                    value: Option<String>,
                    default: &str,
                    errors: &mut Vec<ConfigError>| {
            let text = value.unwrap_or_else(|| default.to_string());
            match text.parse::<SocketAddr>() {
                Ok(a) => Some(a),
                Err(_) => {
                    errors.push(ConfigError::new(
                        field,
                        format!("'{text}' is not an IP:port address (for example 127.0.0.1:8081)"),
                    ));
                    None
                }
            }
        };
        let http_addr = addr(
            "http_addr",
            self.http_addr,
            defaults::HTTP_ADDR,
            &mut errors,
        );
        let raft_addr = addr(
            "raft_addr",
            self.raft_addr,
            defaults::RAFT_ADDR,
            &mut errors,
        );
        if let (Some(h), Some(r)) = (http_addr, raft_addr) {
            if h == r && h.port() != 0 {
                errors.push(ConfigError::new(
                    "raft_addr",
                    format!("must differ from http_addr ({h})"),
                ));
            }
        }
        let bootstrap = self.bootstrap.unwrap_or(false);
        let join = self.join.unwrap_or_default();
        let join: Vec<String> = join
            .into_iter()
            .map(|j| j.trim().to_string())
            .filter(|j| !j.is_empty())
            .collect();
        if bootstrap && !join.is_empty() {
            errors.push(ConfigError::new(
                "bootstrap",
                "--bootstrap and --join exclude each other: bootstrap starts a new cluster, join enters an existing one",
            ));
        }
        for j in &join {
            if !is_host_port(j) {
                errors.push(ConfigError::new(
                    "join",
                    format!("'{j}' is not a host:port address"),
                ));
            }
        }
        let heartbeat_ms = self.heartbeat_ms.unwrap_or(defaults::HEARTBEAT_MS);
        let election_min = self
            .election_timeout_min_ms
            .unwrap_or(defaults::ELECTION_TIMEOUT_MIN_MS);
        let election_max = self
            .election_timeout_max_ms
            .unwrap_or(defaults::ELECTION_TIMEOUT_MAX_MS);
        if heartbeat_ms == 0 {
            errors.push(ConfigError::new("heartbeat_ms", "must be positive"));
        }
        if election_min < heartbeat_ms.saturating_mul(3) {
            errors.push(ConfigError::new(
                "election_timeout_min_ms",
                format!(
                    "must be at least three heartbeats (3 x heartbeat_ms = {}), so that a late heartbeat does not start an election",
                    heartbeat_ms.saturating_mul(3)
                ),
            ));
        }
        if election_max <= election_min {
            errors.push(ConfigError::new(
                "election_timeout_max_ms",
                format!("must exceed election_timeout_min_ms ({election_min})"),
            ));
        }
        let snapshot_threshold = self
            .snapshot_threshold
            .unwrap_or(defaults::SNAPSHOT_THRESHOLD);
        if snapshot_threshold == 0 {
            errors.push(ConfigError::new("snapshot_threshold", "must be positive"));
        }
        let request_timeout_ms = self
            .request_timeout_ms
            .unwrap_or(defaults::REQUEST_TIMEOUT_MS);
        if request_timeout_ms == 0 {
            errors.push(ConfigError::new("request_timeout_ms", "must be positive"));
        }
        let failover_after_ms = self
            .failover_after_ms
            .unwrap_or(defaults::FAILOVER_AFTER_MS);
        if failover_after_ms < election_max {
            errors.push(ConfigError::new(
                "failover_after_ms",
                format!(
                    "must be at least election_timeout_max_ms ({election_max}): a member is not declared dead sooner than a leader would be"
                ),
            ));
        }
        let data_dir = self
            .data_dir
            .unwrap_or_else(|| PathBuf::from(defaults::DATA_DIR));
        if let Err(problem) = check_writable(&data_dir) {
            errors.push(ConfigError::new("data_dir", problem));
        }
        let tls = tls_files(self.tls_cert, self.tls_key, self.tls_ca, &mut errors);
        let discover = match self
            .discover
            .as_deref()
            .map(str::parse::<crate::discovery::Discover>)
        {
            None => None,
            Some(Ok(d)) => Some(d),
            Some(Err(why)) => {
                errors.push(ConfigError::new("discover", why));
                None
            }
        };
        if self.discover.is_some() && (bootstrap || !join.is_empty()) {
            errors.push(ConfigError::new(
                "discover",
                "--discover replaces --bootstrap and --join: give one way to enter the cluster",
            ));
        }
        let bootstrap_expect = match (self.discover.is_some(), self.bootstrap_expect) {
            (true, None) => {
                errors.push(ConfigError::new(
                    "bootstrap_expect",
                    "--discover needs --bootstrap-expect N: how many nodes form the cluster first",
                ));
                0
            }
            (_, Some(0)) => {
                errors.push(ConfigError::new("bootstrap_expect", "must be at least 1"));
                0
            }
            (false, Some(_)) => {
                errors.push(ConfigError::new(
                    "bootstrap_expect",
                    "only means something with --discover",
                ));
                0
            }
            (_, n) => n.unwrap_or(0),
        };
        let dns_server = match self.dns_server.as_deref().map(str::parse::<SocketAddr>) {
            None => None,
            Some(Ok(a)) => Some(a),
            Some(Err(_)) => {
                errors.push(ConfigError::new(
                    "dns_server",
                    format!(
                        "'{}' is not an IP:port address",
                        self.dns_server.as_deref().unwrap_or_default()
                    ),
                ));
                None
            }
        };
        let security = security(
            self.users_file,
            self.users,
            self.cluster_secret,
            self.cluster_secret_file,
            tls,
            &mut errors,
        );
        match (errors.is_empty(), http_addr, raft_addr) {
            (true, Some(http_addr), Some(raft_addr)) => Ok(NodeConfig {
                node_id,
                http_addr,
                raft_addr,
                data_dir,
                bootstrap,
                join,
                learner: self.learner.unwrap_or(false),
                heartbeat_ms,
                election_timeout_min_ms: election_min,
                election_timeout_max_ms: election_max,
                snapshot_threshold,
                snapshot_keep_logs: self
                    .snapshot_keep_logs
                    .unwrap_or(defaults::SNAPSHOT_KEEP_LOGS),
                join_timeout_secs: self
                    .join_timeout_secs
                    .unwrap_or(defaults::JOIN_TIMEOUT_SECS),
                request_timeout_ms,
                failover_after_ms,
                worker_threads: self.worker_threads,
                security,
                discover,
                bootstrap_expect,
                dns_server,
            }),
            _ => Err(errors),
        }
    }
}

/// The users and the cluster secret, from the files and inline values given.
fn security(
    users_file: Option<PathBuf>,
    users: Option<Vec<crate::auth::UserEntry>>,
    secret: Option<String>,
    secret_file: Option<PathBuf>,
    tls: Option<crate::tls::TlsFiles>,
    errors: &mut Vec<ConfigError>,
) -> Security {
    let mut entries = users.unwrap_or_default();
    if let Some(path) = &users_file {
        match crate::auth::UsersFile::read(path) {
            Ok(file) => entries.extend(file.users),
            Err(why) => errors.push(ConfigError::new("users_file", why)),
        }
    }
    let users = match crate::auth::validate_users(&entries) {
        Ok(users) => users,
        Err(problems) => {
            let field = if users_file.is_some() {
                "users_file"
            } else {
                "users"
            };
            errors.extend(problems.into_iter().map(|p| ConfigError::new(field, p)));
            Vec::new()
        }
    };
    let secret = match (secret, secret_file) {
        (Some(_), Some(_)) => {
            errors.push(ConfigError::new(
                "cluster_secret",
                "give cluster_secret or cluster_secret_file, not both",
            ));
            None
        }
        (Some(s), None) => Some(("cluster_secret", s)),
        (None, Some(path)) => match std::fs::read_to_string(&path) {
            Ok(text) => Some((
                "cluster_secret_file",
                text.lines().next().unwrap_or("").trim().to_string(),
            )),
            Err(e) => {
                errors.push(ConfigError::new(
                    "cluster_secret_file",
                    format!("cannot read {}: {e}", path.display()),
                ));
                None
            }
        },
        (None, None) => None,
    };
    let cluster_secret = secret.and_then(|(field, s)| match crate::auth::ClusterSecret::new(s) {
        Ok(s) => Some(s),
        Err(why) => {
            errors.push(ConfigError::new(field, why));
            None
        }
    });
    if !entries.is_empty()
        && cluster_secret.is_none()
        && tls.is_none()
        && !errors
            .iter()
            .any(|e| e.field.starts_with("cluster_secret") || e.field.starts_with("tls_"))
    {
        errors.push(ConfigError::new(
            "cluster_secret",
            "users are configured but node-to-node calls are open: set a cluster secret shared by every node, or TLS with tls_ca",
        ));
    }
    Security {
        users,
        cluster_secret,
        tls,
    }
}

/// The TLS files: all three or none, each loading.
fn tls_files(
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    ca: Option<PathBuf>,
    errors: &mut Vec<ConfigError>,
) -> Option<crate::tls::TlsFiles> {
    match (cert, key, ca) {
        (None, None, None) => None,
        (Some(cert), Some(key), Some(ca)) => {
            let files = crate::tls::TlsFiles { cert, key, ca };
            match crate::tls::Tls::load(&files) {
                Ok(_) => Some(files),
                Err(why) => {
                    let field = ["tls_cert", "tls_key", "tls_ca"]
                        .into_iter()
                        .find(|f| why.starts_with(f))
                        .unwrap_or("tls_cert");
                    errors.push(ConfigError::new(field, why));
                    None
                }
            }
        }
        (cert, key, ca) => {
            for (field, given) in [
                ("tls_cert", cert.is_some()),
                ("tls_key", key.is_some()),
                ("tls_ca", ca.is_some()),
            ] {
                if !given {
                    errors.push(ConfigError::new(
                        field,
                        "TLS needs tls_cert, tls_key and tls_ca (the CA that signed every node's certificate) together",
                    ));
                }
            }
            None
        }
    }
}

/// Who may call a node: its users and the secret its cluster's nodes share.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Security {
    pub users: Vec<crate::auth::User>,
    pub cluster_secret: Option<crate::auth::ClusterSecret>,
    /// TLS on both listeners and node-to-node calls.
    pub tls: Option<crate::tls::TlsFiles>,
}

impl Security {
    /// The gate that checks requests against these settings.
    pub fn gate(&self) -> crate::auth::Gate {
        crate::auth::Gate::new(
            self.users.clone(),
            self.cluster_secret.clone(),
            self.tls.is_some(),
        )
    }
}

fn is_host_port(s: &str) -> bool {
    match s.rsplit_once(':') {
        Some((host, port)) => {
            !host.is_empty() && port.parse::<u16>().is_ok() && !host.contains('/')
        }
        None => false,
    }
}

fn check_writable(dir: &Path) -> Result<(), String> {
    if let Err(e) = std::fs::create_dir_all(dir) {
        return Err(format!("cannot create {}: {e}", dir.display()));
    }
    let probe = dir.join(".wire-write-probe");
    match std::fs::write(&probe, b"probe") {
        Ok(()) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) => Err(format!("{} is not writable: {e}", dir.display())),
    }
}

/// A validated node configuration. Build it with [`NodeOptions::validate`] (or
/// [`NodeConfig::single`] for a quick single-node setup); pass it to `Node::start`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeConfig {
    /// This node's id, unique in the cluster.
    pub node_id: u64,
    /// Public HTTP API address; port 0 picks a free port.
    pub http_addr: SocketAddr,
    /// Node-to-node Raft address; port 0 picks a free port.
    pub raft_addr: SocketAddr,
    /// Directory of the node's database.
    pub data_dir: PathBuf,
    /// Start a new cluster with this node as its only member.
    pub bootstrap: bool,
    /// HTTP addresses of members to join through.
    pub join: Vec<String>,
    /// Join as a non-voting learner.
    pub learner: bool,
    /// Raft heartbeat interval.
    pub heartbeat_ms: u64,
    /// Lower bound of the election timeout.
    pub election_timeout_min_ms: u64,
    /// Upper bound of the election timeout.
    pub election_timeout_max_ms: u64,
    /// Log entries between snapshots.
    pub snapshot_threshold: u64,
    /// Log entries kept behind a snapshot.
    pub snapshot_keep_logs: u64,
    /// How long to keep trying the join addresses.
    pub join_timeout_secs: u64,
    /// Longest a write or linearizable read waits for the cluster.
    pub request_timeout_ms: u64,
    /// How long a silent member is trusted before its partitions move.
    pub failover_after_ms: u64,
    /// Threads of the `wire node` runtime (`None`: one per CPU). Embedded nodes run on their
    /// host's runtime and ignore it.
    pub worker_threads: Option<usize>,
    /// Users and the cluster secret (never serialized).
    #[serde(skip)]
    pub security: Security,
    /// How to find the other nodes, instead of `bootstrap` and `join`.
    pub discover: Option<crate::discovery::Discover>,
    /// With `discover`: the nodes to find before the lowest id bootstraps.
    pub bootstrap_expect: usize,
    /// The DNS server of the DNS modes (`None`: /etc/resolv.conf's).
    pub dns_server: Option<SocketAddr>,
}

impl NodeConfig {
    /// The election settings.
    pub fn election(&self) -> ElectionSettings {
        ElectionSettings {
            heartbeat: Duration::from_millis(self.heartbeat_ms),
            min: Duration::from_millis(self.election_timeout_min_ms),
            max: Duration::from_millis(self.election_timeout_max_ms),
        }
    }

    /// A bootstrapping single node on free loopback ports, storing under `data_dir`.
    pub fn single(data_dir: impl Into<PathBuf>, node_id: u64) -> NodeConfig {
        NodeConfig {
            node_id,
            http_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            raft_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir: data_dir.into(),
            bootstrap: true,
            join: Vec::new(),
            learner: false,
            heartbeat_ms: defaults::HEARTBEAT_MS,
            election_timeout_min_ms: defaults::ELECTION_TIMEOUT_MIN_MS,
            election_timeout_max_ms: defaults::ELECTION_TIMEOUT_MAX_MS,
            snapshot_threshold: defaults::SNAPSHOT_THRESHOLD,
            snapshot_keep_logs: defaults::SNAPSHOT_KEEP_LOGS,
            join_timeout_secs: defaults::JOIN_TIMEOUT_SECS,
            request_timeout_ms: defaults::REQUEST_TIMEOUT_MS,
            failover_after_ms: defaults::FAILOVER_AFTER_MS,
            worker_threads: None,
            security: Security::default(),
            discover: None,
            bootstrap_expect: 0,
            dns_server: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_problem_is_reported_at_once() {
        let opts = NodeOptions {
            node_id: Some(0),
            http_addr: Some("localhost".into()),
            raft_addr: Some("1.2.3.4:99999".into()),
            bootstrap: Some(true),
            join: Some(vec!["127.0.0.1:8081".into(), "nope".into()]),
            data_dir: Some(PathBuf::from("/proc/wire-cannot-write-here")),
            ..Default::default()
        };
        let errors = opts.validate().map(|_| ()).unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field).collect();
        assert_eq!(
            fields,
            [
                "node_id",
                "http_addr",
                "raft_addr",
                "bootstrap",
                "join",
                "data_dir"
            ],
            "{errors:?}"
        );
    }

    #[test]
    fn flags_override_the_file_and_unknown_keys_are_rejected() {
        let file = NodeOptions::from_toml("node_id = 3\nhttp_addr = \"127.0.0.1:8083\"\n")
            .map_err(|e| e.to_string());
        let file = match file {
            Ok(f) => f,
            Err(e) => panic!("valid toml rejected: {e}"),
        };
        let merged = file.merge(NodeOptions {
            node_id: Some(4),
            ..Default::default()
        });
        assert_eq!(merged.node_id, Some(4));
        assert_eq!(merged.http_addr.as_deref(), Some("127.0.0.1:8083"));
        let err = NodeOptions::from_toml("nod_id = 3\n")
            .map(|_| ())
            .unwrap_err();
        assert!(err.problem.contains("unknown field `nod_id`"), "{err}");
    }

    #[test]
    fn discovery_and_security_problems_are_named_together() {
        let opts = NodeOptions {
            discover: Some("zookeeper:x".into()),
            bootstrap: Some(true),
            dns_server: Some("nowhere".into()),
            tls_cert: Some(PathBuf::from("/no/such/cert.pem")),
            users: Some(vec![crate::auth::UserEntry {
                name: "ops".into(),
                password_hash: None,
                token_sha256: Some("0".repeat(64)),
                permissions: vec!["all".into()],
            }]),
            data_dir: Some(std::env::temp_dir().join("wire-config-test")),
            ..Default::default()
        };
        let errors = opts.validate().map(|_| ()).unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field).collect();
        for field in [
            "discover",
            "bootstrap_expect",
            "dns_server",
            "tls_key",
            "tls_ca",
        ] {
            assert!(fields.contains(&field), "{field} in {errors:?}");
        }
        let expect_without = NodeOptions {
            bootstrap_expect: Some(3),
            data_dir: Some(std::env::temp_dir().join("wire-config-test")),
            ..Default::default()
        };
        let errors = expect_without.validate().map(|_| ()).unwrap_err();
        assert_eq!(errors[0].field, "bootstrap_expect", "{errors:?}");
    }

    #[test]
    fn defaults_validate() {
        let dir = tempfile::tempdir().map_err(|e| e.to_string());
        let dir = match dir {
            Ok(d) => d,
            Err(e) => panic!("{e}"),
        };
        let config = NodeOptions {
            data_dir: Some(dir.path().to_path_buf()),
            ..Default::default()
        }
        .validate();
        let config = match config {
            Ok(c) => c,
            Err(e) => panic!("{e:?}"),
        };
        assert_eq!(config.http_addr.to_string(), defaults::HTTP_ADDR);
        assert_eq!(
            config.election_timeout_min_ms,
            defaults::ELECTION_TIMEOUT_MIN_MS
        );
    }
}
