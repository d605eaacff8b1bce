//! The engine's error type. Each area has its own enum; all convert into [`Error`], which the
//! HTTP, C and Python layers map to their own forms. Retryable conditions (no leader yet, a
//! peer unreachable) are kept apart from what the caller got wrong and from fatal failures.

use crate::config::ConfigError;
use crate::kv::KvError;

/// Any error the engine reports.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The node configuration is invalid; every problem is listed.
    #[error("invalid configuration: {}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
    Config(Vec<ConfigError>),
    /// A key, value or transaction the caller supplied is invalid.
    #[error(transparent)]
    Kv(#[from] KvError),
    /// A pipeline spec is invalid; every problem is listed with its place.
    #[error("invalid pipeline spec: {}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
    InvalidSpec(Vec<crate::pipeline::SpecError>),
    /// The caller asked for something invalid in the current cluster state.
    #[error("{0}")]
    Invalid(String),
    /// The named thing does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// The request conflicts with the cluster's state (for example a node id already used by
    /// other addresses).
    #[error("{0}")]
    Conflict(String),
    /// Retryable: this node is not the leader (the call is retried on the leader it names).
    #[error("this node is not the leader (leader: {})", .leader.map(|l| l.to_string()).unwrap_or_else(|| "unknown".into()))]
    NotLeader { leader: Option<u64> },
    /// Retryable: the cluster cannot serve this now (no leader during an election, leader
    /// unreachable, quorum lost). Try again shortly.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The node's storage failed; the node cannot continue safely.
    #[error("storage: {0}")]
    Storage(String),
    /// The node is shutting down or has shut down.
    #[error("node is shut down")]
    Shutdown,
    /// An I/O failure (binding a listener, creating the data dir, ...).
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// An unexpected internal failure.
    #[error("internal: {0}")]
    Internal(String),
}

impl Error {
    /// Whether retrying the same request later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Unavailable(_) | Error::NotLeader { .. })
    }

    pub(crate) fn storage(e: impl std::fmt::Display) -> Self {
        Error::Storage(e.to_string())
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

/// A `Result` with the engine's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
