//! Logging to standard error for the `wire` binary and embedded nodes: human-readable or JSON
//! lines, filtered by tracing's env-filter syntax (`RUST_LOG` wins over the given filter).

/// How log lines look.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

/// openraft logs every failed message to an unreachable peer (several WARN and ERROR lines
/// per retry); Wire logs the peer's change of state once instead (`consensus::network`). These
/// targets are off unless the filter names them (`RUST_LOG` replaces the filter whole).
const QUIET_RAFT: &str =
    "openraft::replication=off,openraft::engine::handler::replication_handler=off";

/// Starts logging (once per process; later calls change nothing).
pub fn init(format: LogFormat, filter: &str) {
    let filter = if filter.contains("replication") {
        filter.to_string()
    } else {
        format!("{filter},{QUIET_RAFT}")
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&filter))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
