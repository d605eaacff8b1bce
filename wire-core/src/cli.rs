//! The `wire` command-line program: `wire node` runs a node; `wire kv ...`,
//! `wire pipeline ...` and `wire cluster ...` talk to a node's HTTP API.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::NodeOptions;
use crate::logging::LogFormat;
use crate::node::Node;

/// Wire: a distributed stream-processing engine.
#[derive(Debug, Parser)]
#[command(name = "wire", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a node.
    Node(Box<NodeArgs>),
    /// Read and write the replicated key-value space.
    Kv {
        #[command(flatten)]
        target: Target,
        #[command(subcommand)]
        command: KvCommand,
    },
    /// Create, update, inspect, pause, resume and delete pipelines.
    Pipeline {
        #[command(flatten)]
        target: Target,
        #[command(subcommand)]
        command: PipelineCommand,
    },
    /// Run Wire's demo: a single-node cluster on embedded defaults and a pipeline from a
    /// generator through jq into part files and standard output, printing progress.
    Demo(DemoArgs),
    /// Inspect and change cluster membership.
    Cluster {
        #[command(flatten)]
        target: Target,
        #[command(subcommand)]
        command: ClusterCommand,
    },
    /// Make the secrets of a users file.
    #[command(subcommand)]
    User(UserCommand),
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Read a password from standard input (its first line) and print its argon2 hash, for
    /// `password_hash` in a users file.
    HashPassword,
    /// Print a new random bearer token, then the `token_sha256` line that admits it.
    NewToken,
}

#[derive(Debug, clap::Args)]
struct NodeArgs {
    /// A TOML file with the node's options (flags given here override it).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Human)]
    log_format: LogFormat,
    /// Log filter (tracing's env-filter syntax); `RUST_LOG` overrides it.
    #[arg(long, default_value = "info,openraft=warn")]
    log_level: String,
    #[command(flatten)]
    options: NodeOptions,
}

#[derive(Debug, Clone, clap::Args)]
struct DemoArgs {
    /// Where the node keeps its data and the pipeline writes (default: a new directory
    /// under the system's temp dir).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// The node's HTTP API, for curl and `wire pipeline status demo` while it runs.
    #[arg(long, default_value = "127.0.0.1:8081")]
    http_addr: std::net::SocketAddr,
    /// The node's Raft listener.
    #[arg(long, default_value = "127.0.0.1:9081")]
    raft_addr: std::net::SocketAddr,
    /// Orders to generate (0: without end, until Ctrl-C).
    #[arg(long, default_value_t = 20_000)]
    count: u64,
    /// Orders per second.
    #[arg(long, default_value_t = 5_000)]
    rate: u64,
}

#[derive(Debug, clap::Args)]
struct Target {
    /// HTTP address of the node to talk to.
    #[arg(
        long,
        global = true,
        env = "WIRE_ADDR",
        default_value = "127.0.0.1:8081"
    )]
    addr: String,
    /// User for HTTP basic auth: NAME, or NAME:PASSWORD.
    #[arg(long, global = true, env = "WIRE_USER")]
    user: Option<String>,
    /// The user's password (when not given in --user).
    #[arg(long, global = true, env = "WIRE_PASSWORD", hide_env_values = true)]
    password: Option<String>,
    /// A bearer token (instead of a user and password).
    #[arg(long, global = true, env = "WIRE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The CA (PEM) that signed the node's certificate: talk TLS (https) and trust it.
    #[arg(long, global = true, env = "WIRE_CA")]
    ca: Option<PathBuf>,
    /// A client certificate (PEM) to show, with --key.
    #[arg(id = "tls_cert", long = "cert", global = true, env = "WIRE_CERT")]
    cert: Option<PathBuf>,
    /// The private key (PEM) of --cert.
    #[arg(id = "tls_key", long = "key", global = true, env = "WIRE_KEY")]
    key: Option<PathBuf>,
}

impl Target {
    /// `http://addr` (or the scheme the address gives).
    fn base(&self) -> String {
        if self.addr.contains("://") {
            self.addr.trim_end_matches('/').to_string()
        } else if self.ca.is_some() {
            format!("https://{}", self.addr)
        } else {
            format!("http://{}", self.addr)
        }
    }

    /// A client that shows the credentials given with every request.
    fn client(&self) -> Result<reqwest::Client, String> {
        let authorization = match (&self.user, &self.token) {
            (Some(_), Some(_)) => return Err("give --user or --token, not both".into()),
            (None, Some(token)) => Some(format!("Bearer {token}")),
            (Some(user), None) => {
                let (name, password) = match (user.split_once(':'), &self.password) {
                    (Some((n, p)), None) => (n, p),
                    (None, Some(p)) => (user.as_str(), p.as_str()),
                    (Some(_), Some(_)) => {
                        return Err("the password is in --user and in --password: give one".into())
                    }
                    (None, None) => {
                        return Err(format!(
                            "no password for user '{user}': give --password (or WIRE_PASSWORD)"
                        ))
                    }
                };
                use base64::Engine;
                let encoded =
                    base64::engine::general_purpose::STANDARD.encode(format!("{name}:{password}"));
                Some(format!("Basic {encoded}"))
            }
            (None, None) => None,
        };
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(value) = authorization {
            let mut value = reqwest::header::HeaderValue::from_str(&value)
                .map_err(|_| "the credentials are not valid header text".to_string())?;
            value.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        let read = |p: &PathBuf, what: &str| {
            std::fs::read(p).map_err(|e| format!("{what} {}: {e}", p.display()))
        };
        let mut builder = reqwest::Client::builder()
            .no_proxy()
            .default_headers(headers);
        if let Some(ca) = &self.ca {
            let ca = reqwest::Certificate::from_pem(&read(ca, "--ca")?)
                .map_err(|e| format!("--ca: {e}"))?;
            builder = builder
                .tls_built_in_root_certs(false)
                .add_root_certificate(ca);
        }
        match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => {
                let mut pem = read(cert, "--cert")?;
                pem.push(b'\n');
                pem.extend(read(key, "--key")?);
                let identity =
                    reqwest::Identity::from_pem(&pem).map_err(|e| format!("--cert/--key: {e}"))?;
                builder = builder.identity(identity);
            }
            (None, None) => {}
            _ => return Err("give --cert and --key together".into()),
        }
        if self.base().starts_with("https://") && self.ca.is_none() {
            return Err(
                "an https:// address needs --ca (the CA that signed the node's certificate)".into(),
            );
        }
        builder.build().map_err(|e| e.to_string())
    }
}

#[derive(Debug, Subcommand)]
enum KvCommand {
    /// Print a key's value.
    Get {
        key: String,
        /// linearizable (default), leader or local.
        #[arg(long)]
        consistency: Option<String>,
    },
    /// Set a key; VALUE `-` reads the value from standard input.
    Put { key: String, value: String },
    /// Delete a key.
    Delete { key: String },
    /// List keys and values.
    List {
        #[arg(long)]
        prefix: Option<String>,
        #[arg(long)]
        limit: Option<usize>,
        #[arg(long)]
        after: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum PipelineCommand {
    /// Create a pipeline, or store a new version of it, from a JSON or YAML spec file
    /// (`-` reads standard input).
    Apply {
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
    },
    /// List the pipelines.
    List,
    /// Show a pipeline: state, partitions, positions and counters.
    Status {
        name: String,
        /// Print a line of live throughput every second until the pipeline ends (or Ctrl-C).
        #[arg(long)]
        watch: bool,
    },
    /// Pause a pipeline at its last checkpoint.
    Pause { name: String },
    /// Resume a paused pipeline.
    Resume { name: String },
    /// Delete a pipeline.
    Delete { name: String },
}

#[derive(Debug, Subcommand)]
enum ClusterCommand {
    /// Print the node's status.
    Status,
    /// Ask the cluster to add a node.
    Join {
        #[arg(long)]
        node_id: u64,
        #[arg(long)]
        http_addr: String,
        #[arg(long)]
        raft_addr: String,
        #[arg(long)]
        learner: bool,
    },
    /// Remove a member.
    Remove { node_id: u64 },
    /// Drain a member before maintenance: its pipeline partitions are handed off to the
    /// others (each after a final checkpoint) and it takes no new ones. `--undo` ends it.
    Drain {
        node_id: u64,
        #[arg(long)]
        undo: bool,
    },
}

/// Runs the program with the process's arguments.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // A node's configuration is read before its runtime exists: it sizes the runtime.
    let (command, worker_threads) = match cli.command {
        Command::Node(args) => match node_config(&args) {
            Ok(config) => {
                let threads = config.worker_threads;
                (Runnable::Node(args, Box::new(config)), threads)
            }
            Err(code) => return code,
        },
        Command::Demo(args) => (Runnable::Client(Box::new(Command::Demo(args))), None),
        other => (Runnable::Client(Box::new(other)), Some(1)),
    };
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = worker_threads {
        builder.worker_threads(n);
    }
    let runtime = match builder.enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        let command = match command {
            Runnable::Node(args, config) => return run_node(args, *config).await,
            Runnable::Client(command) => *command,
        };
        match command {
            Command::Kv { target, command } => kv(&target, command).await,
            Command::Cluster { target, command } => cluster(&target, command).await,
            Command::Pipeline { target, command } => pipeline(&target, command).await,
            Command::User(command) => user(command),
            Command::Demo(args) => crate::demo::run(args.into()).await,
            Command::Node(_) => Ok(ExitCode::FAILURE),
        }
    });
    match result {
        Ok(code) => code,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// What `main` runs once the runtime is up.
enum Runnable {
    Node(Box<NodeArgs>, Box<crate::config::NodeConfig>),
    Client(Box<Command>),
}

/// Reads and validates a node's configuration, printing every problem (exit code 2).
fn node_config(args: &NodeArgs) -> Result<crate::config::NodeConfig, ExitCode> {
    let file = match &args.config {
        Some(path) => match NodeOptions::from_toml_file(path) {
            Ok(f) => f,
            Err(e) => {
                eprintln!("error: {e}");
                return Err(ExitCode::from(2));
            }
        },
        None => NodeOptions::default(),
    };
    file.merge(args.options.clone())
        .validate()
        .map_err(|errors| {
            eprintln!("invalid configuration ({} problems):", errors.len());
            for e in errors {
                eprintln!("  {e}");
            }
            ExitCode::from(2)
        })
}

impl From<DemoArgs> for crate::demo::DemoOptions {
    fn from(a: DemoArgs) -> Self {
        crate::demo::DemoOptions {
            data_dir: a.data_dir,
            http_addr: a.http_addr,
            raft_addr: a.raft_addr,
            count: (a.count > 0).then_some(a.count),
            rate: a.rate.max(1),
        }
    }
}

/// Starts logging to standard error (human-readable, warnings and up) for embedded runs.
pub fn init_quiet_logging() {
    crate::logging::init(LogFormat::Human, "warn");
}

async fn run_node(
    args: Box<NodeArgs>,
    config: crate::config::NodeConfig,
) -> Result<ExitCode, String> {
    crate::logging::init(args.log_format, &args.log_level);
    let node = Node::start(config).await.map_err(|e| e.to_string())?;
    wait_for_signal().await;
    tracing::info!("signal received: shutting down");
    node.shutdown().await.map_err(|e| e.to_string())?;
    Ok(ExitCode::SUCCESS)
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn user(command: UserCommand) -> Result<ExitCode, String> {
    match command {
        UserCommand::HashPassword => {
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .map_err(|e| format!("reading standard input: {e}"))?;
            let password = line.trim_end_matches(['\r', '\n']);
            if password.is_empty() {
                return Err("no password on standard input".into());
            }
            println!("{}", crate::auth::hash_password(password)?);
        }
        UserCommand::NewToken => {
            let token = crate::auth::new_token();
            if token.is_empty() {
                return Err("the system gave no randomness for a token".into());
            }
            println!("{token}");
            println!("token_sha256 = \"{}\"", crate::auth::token_sha256(&token));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Sends a request and prints the answer: the body on success (exit 0), the error on
/// standard error otherwise (exit 1).
async fn send(req: reqwest::RequestBuilder) -> Result<ExitCode, String> {
    let resp = req
        .send()
        .await
        .map_err(|e| format!("request failed: {e}"))?;
    let status = resp.status();
    let body = resp.bytes().await.map_err(|e| e.to_string())?;
    if status.is_success() {
        use std::io::Write;
        let mut out = std::io::stdout();
        let _ = out.write_all(&body);
        if !body.ends_with(b"\n") {
            let _ = out.write_all(b"\n");
        }
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("{status}: {}", String::from_utf8_lossy(&body));
        Ok(ExitCode::FAILURE)
    }
}

fn key_url(base: &str, key: &str) -> String {
    let encoded: String = key
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect();
    format!("{base}/kv/{encoded}")
}

async fn kv(target: &Target, command: KvCommand) -> Result<ExitCode, String> {
    let http = target.client()?;
    let addr = &target.base();
    let req = match command {
        KvCommand::Get { key, consistency } => {
            let mut req = http.get(key_url(addr, &key));
            if let Some(c) = consistency {
                req = req.query(&[("consistency", c)]);
            }
            req
        }
        KvCommand::Put { key, value } => {
            let body = if value == "-" {
                let mut buf = Vec::new();
                std::io::stdin()
                    .read_to_end(&mut buf)
                    .map_err(|e| format!("reading standard input: {e}"))?;
                buf
            } else {
                value.into_bytes()
            };
            http.put(key_url(addr, &key)).body(body)
        }
        KvCommand::Delete { key } => http.delete(key_url(addr, &key)),
        KvCommand::List {
            prefix,
            limit,
            after,
        } => {
            let mut query: Vec<(&str, String)> = Vec::new();
            if let Some(p) = prefix {
                query.push(("prefix", p));
            }
            if let Some(l) = limit {
                query.push(("limit", l.to_string()));
            }
            if let Some(a) = after {
                query.push(("after", a));
            }
            http.get(format!("{addr}/kv")).query(&query)
        }
    };
    send(req).await
}

async fn pipeline(target: &Target, command: PipelineCommand) -> Result<ExitCode, String> {
    let http = target.client()?;
    let base = format!("{}/pipelines", target.base());
    let req = match command {
        PipelineCommand::Apply { file } => {
            let text = if file.as_os_str() == "-" {
                let mut buf = String::new();
                std::io::stdin()
                    .read_to_string(&mut buf)
                    .map_err(|e| format!("reading standard input: {e}"))?;
                buf
            } else {
                std::fs::read_to_string(&file)
                    .map_err(|e| format!("reading {}: {e}", file.display()))?
            };
            // The name picks the route; the node validates the whole spec again.
            let spec = match crate::pipeline::PipelineSpec::parse(&text) {
                Ok(spec) => spec,
                Err(errors) => {
                    eprintln!("invalid spec ({} problems):", errors.len());
                    for e in errors {
                        eprintln!("  {e}");
                    }
                    return Ok(ExitCode::from(2));
                }
            };
            http.put(format!("{base}/{}", spec.name)).body(text)
        }
        PipelineCommand::List => http.get(base),
        PipelineCommand::Status { name, watch: true } => {
            return crate::demo::watch(&http, &format!("{base}/{name}")).await
        }
        PipelineCommand::Status { name, .. } => http.get(format!("{base}/{name}")),
        PipelineCommand::Pause { name } => http.post(format!("{base}/{name}/pause")),
        PipelineCommand::Resume { name } => http.post(format!("{base}/{name}/resume")),
        PipelineCommand::Delete { name } => http.delete(format!("{base}/{name}")),
    };
    send(req).await
}

async fn cluster(target: &Target, command: ClusterCommand) -> Result<ExitCode, String> {
    let http = target.client()?;
    let addr = &target.base();
    let req = match command {
        ClusterCommand::Status => http.get(format!("{addr}/status")),
        ClusterCommand::Join {
            node_id,
            http_addr,
            raft_addr,
            learner,
        } => http
            .post(format!("{addr}/cluster/join"))
            .json(&crate::cluster::JoinRequest {
                node_id,
                http_addr,
                raft_addr,
                learner,
                protocol: crate::consensus::PROTOCOL_VERSION,
            }),
        ClusterCommand::Remove { node_id } => {
            http.delete(format!("{addr}/cluster/members/{node_id}"))
        }
        ClusterCommand::Drain { node_id, undo } => {
            let url = format!("{addr}/cluster/members/{node_id}/drain");
            if undo {
                http.delete(url)
            } else {
                http.post(url)
            }
        }
    };
    send(req).await
}
