//! The contract of the node-level calls a follower makes to its leader (forwarded writes,
//! read-index, joins, removals, hand-offs, job reports): their paths on the `--raft-addr`
//! listener and how an error crosses between nodes. `rpc.rs` serves them; the node calls
//! them.

use serde::{Deserialize, Serialize};

use crate::consensus::NodeId;
use crate::{Error, ErrorKind};

/// Paths of the node-level endpoints.
pub mod paths {
    pub const WRITE: &str = "/internal/write";
    pub const READ_INDEX: &str = "/internal/read-index";
    pub const JOIN: &str = "/internal/join";
    pub const REMOVE: &str = "/internal/remove";
    pub const CAMPAIGN: &str = "/internal/campaign";
    pub const JOB_REPORT: &str = "/internal/job-report";
    pub const LIVENESS: &str = "/internal/liveness";
}

/// An [`Error`] as it crosses between nodes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum RemoteFailure {
    NotLeader(Option<NodeId>),
    Invalid(String),
    InvalidSpec(Vec<crate::pipeline::SpecError>),
    NotFound(String),
    Conflict(String),
    Unavailable(String),
    Other(String),
}

impl From<Error> for RemoteFailure {
    fn from(e: Error) -> Self {
        match e {
            Error::NotLeader { leader } => RemoteFailure::NotLeader(leader),
            Error::InvalidSpec(errors) => RemoteFailure::InvalidSpec(errors),
            Error::Invalid(s) => RemoteFailure::Invalid(s),
            Error::NotFound(s) => RemoteFailure::NotFound(s),
            Error::Conflict(s) => RemoteFailure::Conflict(s),
            Error::Unavailable(s) => RemoteFailure::Unavailable(s),
            Error::Shutdown => RemoteFailure::Unavailable("the leader is shutting down".into()),
            // The rest by kind, so that a new variant lands somewhere sensible.
            e => match e.kind() {
                ErrorKind::BadRequest | ErrorKind::InvalidConfig | ErrorKind::TooLarge => {
                    RemoteFailure::Invalid(e.to_string())
                }
                ErrorKind::NotFound => RemoteFailure::NotFound(e.to_string()),
                ErrorKind::Conflict => RemoteFailure::Conflict(e.to_string()),
                ErrorKind::Unavailable | ErrorKind::ShuttingDown => {
                    RemoteFailure::Unavailable(e.to_string())
                }
                ErrorKind::InvalidSpec
                | ErrorKind::Storage
                | ErrorKind::Io
                | ErrorKind::Internal => RemoteFailure::Other(e.to_string()),
            },
        }
    }
}

impl From<RemoteFailure> for Error {
    fn from(f: RemoteFailure) -> Self {
        match f {
            RemoteFailure::NotLeader(leader) => Error::NotLeader { leader },
            RemoteFailure::Invalid(s) => Error::Invalid(s),
            RemoteFailure::InvalidSpec(errors) => Error::InvalidSpec(errors),
            RemoteFailure::NotFound(s) => Error::NotFound(s),
            RemoteFailure::Conflict(s) => Error::Conflict(s),
            RemoteFailure::Unavailable(s) => Error::Unavailable(s),
            RemoteFailure::Other(s) => Error::Internal(format!("on the leader: {s}")),
        }
    }
}
