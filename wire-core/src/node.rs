//! A Wire node: one redb database, one Raft instance, the public HTTP listener and the
//! node-to-node listener. [`Node`] only wires the parts: the consensus client (writes
//! forwarded to the leader, reads at the consistency asked for), the services every face
//! calls ([`crate::ops`]: kv, pipelines, cluster membership), the pipeline runtime and the
//! election driver; `server.rs` binds the listeners to it.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::SnapshotPolicy;
use redb::Database;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::NodeConfig;
use crate::consensus::client::ConsensusClient;
use crate::consensus::election::LeaderContact;
use crate::consensus::elector::{Elector, RaftCounters};
use crate::consensus::liveness::Liveness;
use crate::consensus::network::{Network, PeerClient, RaftEndpoint};
use crate::consensus::{NodeId, Raft, StateMachineStore, WireNode};
use crate::ops::cluster::ClusterOps;
use crate::ops::kv::KvOps;
use crate::ops::pipelines::PipelineOps;
use crate::pipeline::runtime::supervisor::Runtime;
use crate::{Error, Result};

pub use crate::consensus::client::Consistency;
pub use crate::consensus::proposer::WriteOutcome;
pub use crate::ops::cluster::{LeaderInfo, LogPosition, MemberInfo, NodeStatus};
pub use crate::ops::pipelines::{DesiredSet, PipelineList, PipelineWritten};

pub(crate) struct Opened {
    pub node: Node,
    /// What the Raft endpoints serve.
    pub endpoint: RaftEndpoint,
    pub http_listener: TcpListener,
    pub raft_listener: TcpListener,
}

/// A running node. Clones share it. Call [`Node::shutdown`] to stop it: dropping every handle
/// does not stop its listeners (their tasks hold handles of their own).
#[derive(Clone)]
pub struct Node {
    inner: Arc<NodeInner>,
}

struct NodeInner {
    config: NodeConfig,
    /// Who may call this node.
    gate: crate::auth::Gate,
    /// The node's TLS, when its listeners speak it.
    tls: Option<Arc<crate::tls::Tls>>,
    http_addr: SocketAddr,
    raft_addr: SocketAddr,
    client: ConsensusClient,
    kv: KvOps,
    pipelines: PipelineOps,
    cluster: ClusterOps,
    /// The pipeline jobs this node runs, and its registered transforms.
    runtime: Arc<Runtime>,
    stop: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

/// The address others should use to reach a listener bound at `bound`.
fn advertised(bound: SocketAddr) -> String {
    if bound.ip().is_unspecified() {
        let ip = match bound.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        };
        SocketAddr::new(ip, bound.port()).to_string()
    } else {
        bound.to_string()
    }
}

impl Node {
    /// Opens a node without serving it yet (`server.rs` serves and starts it): its
    /// database, both listeners bound, Raft, the proposers and the election driver.
    pub(crate) async fn open(config: NodeConfig) -> Result<Opened> {
        std::fs::create_dir_all(&config.data_dir)
            .map_err(|e| Error::io(format!("creating {}", config.data_dir.display()), e))?;
        let db_path = config.data_dir.join("wire.redb");
        let claim = open_databases::claim(&db_path).await?;
        let db = Database::create(&db_path)
            .map_err(|e| Error::Storage(format!("opening {}: {e}", db_path.display())))?;
        let db = Arc::new(db);
        let (log_store, state) =
            crate::consensus::open_stores_with(db, Box::new(move || drop(claim)))?;

        let http_listener = TcpListener::bind(config.http_addr)
            .await
            .map_err(|e| Error::io(format!("binding http_addr {}", config.http_addr), e))?;
        let raft_listener = TcpListener::bind(config.raft_addr)
            .await
            .map_err(|e| Error::io(format!("binding raft_addr {}", config.raft_addr), e))?;
        let http_addr = http_listener
            .local_addr()
            .map_err(|e| Error::io("reading the http address", e))?;
        let raft_addr = raft_listener
            .local_addr()
            .map_err(|e| Error::io("reading the raft address", e))?;
        let me = WireNode {
            http_addr: advertised(http_addr),
            raft_addr: advertised(raft_addr),
        };

        let election = config.election();
        let (raft_timeout_min, raft_lease) = election.raft_timeouts();
        let raft_config = openraft::Config {
            cluster_name: "wire".into(),
            heartbeat_interval: config.heartbeat_ms,
            // Elections are Wire's (consensus::election: pre-vote first); openraft's timeouts
            // set only its lease on votes and how long a vote request may take.
            enable_elect: false,
            election_timeout_min: raft_timeout_min,
            election_timeout_max: raft_lease,
            install_snapshot_timeout: 10_000,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(config.snapshot_threshold),
            max_in_snapshot_log_to_keep: config.snapshot_keep_logs,
            // Entries are batches of up to 4 MiB of writes: keep appends to a bounded size.
            max_payload_entries: 128,
            snapshot_max_chunk_size: 1024 * 1024,
            ..Default::default()
        }
        .validate()
        .map_err(|e| Error::Invalid(format!("raft settings: {e}")))?;
        let gate = config.security.gate();
        let tls = match &config.security.tls {
            Some(files) => Some(crate::tls::Tls::load(files).map_err(Error::Invalid)?),
            None => None,
        };
        let peers = PeerClient::new(Duration::from_millis(500), gate.secret(), tls.as_ref())?;
        let liveness = Liveness::default();
        let raft = Raft::new(
            config.node_id,
            Arc::new(raft_config),
            Network::new(peers.clone(), liveness.clone()),
            log_store.clone(),
            state.clone(),
        )
        .await
        .map_err(|e| Error::Storage(format!("starting raft: {e}")))?;

        let finder = match &config.discover {
            Some(discover) => Some(crate::discovery::Finder {
                discover: discover.clone(),
                dns_server: config.dns_server,
                http_port: http_addr.port(),
                http: reqwest::Client::builder()
                    .no_proxy()
                    .build()
                    .map_err(|e| Error::Internal(format!("building the discovery client: {e}")))?,
            }),
            None => None,
        };
        let (stop, _) = watch::channel(false);
        let counters = Arc::new(RaftCounters::default());
        let client = ConsensusClient::new(
            config.node_id,
            raft.clone(),
            state,
            peers.clone(),
            Duration::from_millis(config.request_timeout_ms),
            counters.clone(),
        );
        let runtime = Arc::new(Runtime::default());
        let node = Node {
            inner: Arc::new(NodeInner {
                http_addr,
                raft_addr,
                kv: KvOps::new(client.clone()),
                pipelines: PipelineOps::new(client.clone(), runtime.clone()),
                cluster: ClusterOps::new(
                    client.clone(),
                    me,
                    config.clone(),
                    liveness.clone(),
                    finder,
                ),
                config,
                gate,
                tls: tls.clone(),
                client,
                runtime,
                stop,
                tasks: Mutex::new(Vec::new()),
            }),
        };
        let contact = LeaderContact::default();
        let endpoint = RaftEndpoint {
            raft: raft.clone(),
            log: log_store.clone(),
            contact: contact.clone(),
            settings: election,
        };
        let elector = Elector {
            id: node.id(),
            raft: raft.clone(),
            log: log_store,
            peers,
            contact,
            settings: election,
            counters,
        };
        let elections = tokio::spawn(elector.run(node.inner.stop.subscribe()));
        let leading = tokio::spawn(liveness.clone().follow(raft, node.inner.stop.subscribe()));
        if let Ok(mut tasks) = node.inner.tasks.lock() {
            tasks.extend([elections, leading]);
            if let Some(tls) = tls {
                let stop = node.inner.stop.subscribe();
                tasks.push(tokio::spawn(tls.watch(Duration::from_secs(1), stop)));
            }
        }
        Ok(Opened {
            node,
            endpoint,
            http_listener,
            raft_listener,
        })
    }

    /// Enters the cluster (bootstrap or join as configured), then starts running this node's
    /// share of the pipelines; on failure the node is shut down.
    pub(crate) async fn enter(&self) -> Result<()> {
        if let Err(e) = self.inner.cluster.enter().await {
            let _ = self.shutdown().await;
            return Err(e);
        }
        self.inner
            .runtime
            .start(self.inner.client.clone(), self.inner.cluster.clone());
        Ok(())
    }

    /// Serves `app` on `listener` until the node stops: over TLS when the node has it
    /// (wanting client certificates as `certs` says), else plain.
    pub(crate) fn serve(
        &self,
        listener: TcpListener,
        app: axum::Router,
        certs: crate::tls::ClientCerts,
    ) -> Result<()> {
        let mut stop = self.inner.stop.subscribe();
        let shutdown = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        let app = app.into_make_service_with_connect_info::<crate::tls::Peer>();
        let task = match &self.inner.tls {
            Some(tls) => {
                let listener = crate::tls::TlsListener::new(listener, tls.clone(), certs)
                    .map_err(|e| Error::io("starting a TLS listener", e))?;
                tokio::spawn(async move {
                    if let Err(e) = axum::serve(listener, app)
                        .with_graceful_shutdown(shutdown)
                        .await
                    {
                        tracing::error!(error = %e, "listener failed");
                    }
                })
            }
            None => {
                let listener = crate::tls::PlainListener(listener);
                tokio::spawn(async move {
                    if let Err(e) = axum::serve(listener, app)
                        .with_graceful_shutdown(shutdown)
                        .await
                    {
                        tracing::error!(error = %e, "listener failed");
                    }
                })
            }
        };
        if let Ok(mut tasks) = self.inner.tasks.lock() {
            tasks.push(task);
        }
        Ok(())
    }

    /// Whether the node's listeners speak TLS (`https://`).
    pub fn tls(&self) -> bool {
        self.inner.tls.is_some()
    }

    /// The URL of the node's public API (`http://` or `https://` and the address).
    pub fn url(&self) -> String {
        let scheme = if self.tls() { "https" } else { "http" };
        format!("{scheme}://{}", advertised(self.inner.http_addr))
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.inner.config.node_id
    }

    /// The bound address of the public HTTP API.
    pub fn http_addr(&self) -> SocketAddr {
        self.inner.http_addr
    }

    /// The bound address of the node-to-node listener.
    pub fn raft_addr(&self) -> SocketAddr {
        self.inner.raft_addr
    }

    /// The node's configuration.
    pub fn config(&self) -> &NodeConfig {
        &self.inner.config
    }

    /// Who may call this node: its users and the cluster secret.
    pub fn gate(&self) -> &crate::auth::Gate {
        &self.inner.gate
    }

    /// The consensus client: writes through Raft, read barriers, the leader.
    pub fn client(&self) -> &ConsensusClient {
        &self.inner.client
    }

    /// The key-value service.
    pub fn kv(&self) -> &KvOps {
        &self.inner.kv
    }

    /// The pipeline service.
    pub fn pipelines(&self) -> &PipelineOps {
        &self.inner.pipelines
    }

    /// Cluster membership and the node's view of the cluster.
    pub fn cluster(&self) -> &ClusterOps {
        &self.inner.cluster
    }

    /// This node's pipeline runtime (its jobs' live status).
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.inner.runtime
    }

    /// The Raft instance (for metrics and tests).
    pub fn raft(&self) -> &Raft {
        self.inner.client.raft()
    }

    /// The replicated state machine's local view (for reads that need no barrier).
    pub fn state(&self) -> &StateMachineStore {
        self.inner.client.state()
    }

    /// Counters of elections, leader changes and read-index failures.
    pub fn raft_counters(&self) -> &RaftCounters {
        self.inner.client.counters()
    }

    /// Whether this node is the leader now.
    pub fn is_leader(&self) -> bool {
        self.inner.client.is_leader()
    }

    /// Whether the node takes part in a cluster with a known leader.
    pub fn is_ready(&self) -> bool {
        !self.inner.client.is_stopped() && self.inner.client.current_leader().is_some()
    }

    /// Stops the node: hands off leadership if it leads, stops Raft, closes both listeners.
    /// Idempotent.
    pub async fn shutdown(&self) -> Result<()> {
        if self.inner.client.is_stopped() {
            return Ok(());
        }
        // Jobs take their final checkpoints through Raft: stop them while it still runs.
        self.inner.runtime.stop().await;
        self.inner.cluster.deregister().await;
        if !self.inner.client.stop() {
            return Ok(());
        }
        self.inner.cluster.hand_off_leadership().await;
        let raft_result = self.inner.client.raft().shutdown().await;
        let _ = self.inner.stop.send(true);
        let tasks = match self.inner.tasks.lock() {
            Ok(mut t) => std::mem::take(&mut *t),
            Err(_) => Vec::new(),
        };
        for task in tasks {
            let abort = task.abort_handle();
            if tokio::time::timeout(Duration::from_secs(3), task)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
        tracing::info!(node_id = self.id(), "node stopped");
        raft_result.map_err(|e| Error::Internal(format!("stopping raft: {e}")))
    }
}

/// The databases nodes of this process have open. A node stopped and started again in one
/// process (a host restarting an embedded node) must wait for the old database writer to
/// finish its last flush and close the file, which happens just after `shutdown` returns.
mod open_databases {
    use std::collections::BTreeSet;
    use std::path::{Path, PathBuf};
    use std::sync::Mutex;
    use std::time::Duration;

    use crate::{Error, Result};

    static OPEN: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());

    /// How long a start waits for a database being closed by this process.
    const WAIT: Duration = Duration::from_secs(10);

    /// Holds a path; dropping it (when the database closed) frees the path.
    pub struct Claim(PathBuf);

    impl Drop for Claim {
        fn drop(&mut self) {
            if let Ok(mut open) = OPEN.lock() {
                open.remove(&self.0);
            }
        }
    }

    pub async fn claim(path: &Path) -> Result<Claim> {
        let key = path
            .parent()
            .and_then(|d| d.canonicalize().ok())
            .map(|d| d.join(path.file_name().unwrap_or_default()))
            .unwrap_or_else(|| path.to_path_buf());
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            {
                let mut open = OPEN.lock().unwrap_or_else(|p| p.into_inner());
                if open.insert(key.clone()) {
                    return Ok(Claim(key));
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::Storage(format!(
                    "opening {}: a node of this process still has it open",
                    path.display()
                )));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
