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

/// What kind of error an [`Error`] is, defined once for every face: the code that HTTP
/// answers carry (`{"error": code}`) and Python exceptions keep, the HTTP status, and
/// whether retrying may help. The C ABI and Python match on it exhaustively, so a new kind
/// cannot be forgotten by one of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The caller sent something invalid (a key, a value, a limit, a transaction).
    BadRequest,
    /// The node configuration is invalid.
    InvalidConfig,
    /// A pipeline spec is invalid.
    InvalidSpec,
    /// A value, transaction or body is too large.
    TooLarge,
    /// The named thing does not exist.
    NotFound,
    /// The request conflicts with the cluster's state.
    Conflict,
    /// The cluster cannot serve this now (no leader, no quorum): retry shortly.
    Unavailable,
    /// The node is shutting down or shut down.
    ShuttingDown,
    /// The node's storage failed.
    Storage,
    /// An I/O failure (binding a listener, creating the data dir).
    Io,
    /// An unexpected failure inside the engine.
    Internal,
}

impl ErrorKind {
    /// Every kind.
    pub const ALL: [ErrorKind; 11] = [
        ErrorKind::BadRequest,
        ErrorKind::InvalidConfig,
        ErrorKind::InvalidSpec,
        ErrorKind::TooLarge,
        ErrorKind::NotFound,
        ErrorKind::Conflict,
        ErrorKind::Unavailable,
        ErrorKind::ShuttingDown,
        ErrorKind::Storage,
        ErrorKind::Io,
        ErrorKind::Internal,
    ];

    /// The stable code of this kind.
    pub fn code(self) -> &'static str {
        match self {
            ErrorKind::BadRequest => "bad_request",
            ErrorKind::InvalidConfig => "invalid_config",
            ErrorKind::InvalidSpec => "invalid_spec",
            ErrorKind::TooLarge => "too_large",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::ShuttingDown => "shutting_down",
            ErrorKind::Storage => "storage",
            ErrorKind::Io => "io",
            ErrorKind::Internal => "internal",
        }
    }

    /// The HTTP status of an answer of this kind.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorKind::BadRequest | ErrorKind::InvalidConfig | ErrorKind::InvalidSpec => 400,
            ErrorKind::TooLarge => 413,
            ErrorKind::NotFound => 404,
            ErrorKind::Conflict => 409,
            ErrorKind::Unavailable | ErrorKind::ShuttingDown => 503,
            ErrorKind::Storage | ErrorKind::Io | ErrorKind::Internal => 500,
        }
    }

    /// Whether the same request may succeed if tried again later.
    pub fn retryable(self) -> bool {
        matches!(self, ErrorKind::Unavailable)
    }

    /// Whether the caller got something wrong (as opposed to the node or the cluster).
    pub fn is_caller_error(self) -> bool {
        (400..500).contains(&self.http_status())
    }
}

impl Error {
    /// The kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Kv(KvError::ValueTooLarge { .. }) | Error::Kv(KvError::TxnTooLarge { .. }) => {
                ErrorKind::TooLarge
            }
            Error::Kv(_) | Error::Invalid(_) => ErrorKind::BadRequest,
            Error::Config(_) => ErrorKind::InvalidConfig,
            Error::InvalidSpec(_) => ErrorKind::InvalidSpec,
            Error::NotFound(_) => ErrorKind::NotFound,
            Error::Conflict(_) => ErrorKind::Conflict,
            Error::NotLeader { .. } | Error::Unavailable(_) => ErrorKind::Unavailable,
            Error::Shutdown => ErrorKind::ShuttingDown,
            Error::Storage(_) => ErrorKind::Storage,
            Error::Io { .. } => ErrorKind::Io,
            Error::Internal(_) => ErrorKind::Internal,
        }
    }

    /// Whether retrying the same request later may succeed.
    pub fn is_retryable(&self) -> bool {
        self.kind().retryable()
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn each_kind_has_its_own_code_and_a_status_in_its_class() {
        let codes: BTreeSet<&str> = ErrorKind::ALL.iter().map(|k| k.code()).collect();
        assert_eq!(codes.len(), ErrorKind::ALL.len());
        for kind in ErrorKind::ALL {
            let status = kind.http_status();
            assert!((400..600).contains(&status), "{kind:?}");
            // Only server-side kinds are retryable.
            assert!(!(kind.retryable() && kind.is_caller_error()), "{kind:?}");
        }
        assert_eq!(
            Error::Config(Vec::new()).kind().code(),
            "invalid_config",
            "a config error is the same on every face"
        );
        assert!(Error::NotLeader { leader: None }.is_retryable());
        assert!(!Error::Shutdown.is_retryable());
    }
}
