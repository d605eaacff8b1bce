//! The operations every face of Wire calls — HTTP, the CLI, the C ABI and Python — with typed
//! answers, so the faces never decode Raft's `CommandResponse` and behave the same: the
//! key-value service ([`kv`]), the pipeline catalog ([`pipelines`]) and cluster membership
//! ([`cluster`]). Each holds a [`ConsensusClient`](crate::consensus::client::ConsensusClient)
//! and is wired by [`Node`](crate::Node).

pub mod cluster;
pub mod kv;
pub mod pipelines;

use crate::consensus::CommandResponse;
use crate::Error;

/// A command answered with a response of another kind: a broken invariant of the state
/// machine, reported rather than hidden.
fn unexpected(response: CommandResponse) -> Error {
    Error::Internal(format!("unexpected answer {response:?}"))
}

#[cfg(test)]
mod tests;
