//! Group commit above Raft: concurrent writes are packed into one [`Command::Batch`] per
//! submission, with a few submissions in flight at once.
//!
//! On the leader a submission is one Raft entry: openraft 0.9 fsyncs each proposed entry
//! before it takes the next one, so one entry per client write would cap throughput at the
//! disk's fsync rate; packing every write that arrives while earlier entries are in flight
//! turns one fsync (and one replication round) into many acknowledged writes. On a follower
//! a submission is one forwarding call to the leader, which packs it again with the rest.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{ClientWriteError, RaftError};
use tokio::sync::{mpsc, oneshot, Semaphore};

use super::{Command, CommandResponse, NodeId, Raft};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// Most proposals in flight at once: enough to overlap one batch's local fsync with the
/// previous batch's replication.
const MAX_IN_FLIGHT: usize = 2;
/// Most commands packed into one entry.
const MAX_BATCH_COMMANDS: usize = 1024;
/// Most payload bytes packed into one entry (a single larger command still goes alone).
const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;

/// The result of a committed write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteOutcome {
    /// The log index the write was committed at.
    pub index: u64,
    /// What applying it produced.
    pub response: CommandResponse,
}

type Waiter = oneshot::Sender<Result<WriteOutcome>>;

/// Where a batcher sends each packed command: it answers the command's log index and its
/// response.
pub type Submit = Arc<
    dyn Fn(Command) -> Pin<Box<dyn Future<Output = Result<(u64, CommandResponse)>> + Send>>
        + Send
        + Sync,
>;

/// Submits to the local Raft instance, which must lead; each entry may take up to `timeout`.
pub fn to_raft(raft: Raft, timeout: Duration) -> Submit {
    Arc::new(move |command| {
        let raft = raft.clone();
        Box::pin(async move { write(&raft, timeout, command).await })
    })
}

/// The sending side; cheap to clone. The batching task ends when every handle is dropped.
#[derive(Clone)]
pub struct Proposer {
    queue: mpsc::UnboundedSender<(Command, Waiter)>,
}

impl Proposer {
    /// Starts a batching task that hands each packed command to `submit`.
    pub fn start(submit: Submit) -> Proposer {
        let (queue, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(submit, rx));
        Proposer { queue }
    }

    /// Proposes `command` and waits until it is committed and applied on this node.
    pub async fn propose(&self, command: Command) -> Result<WriteOutcome> {
        let (done, wait) = oneshot::channel();
        self.queue
            .send((command, done))
            .map_err(|_| Error::Shutdown)?;
        wait.await.map_err(|_| Error::Shutdown)?
    }
}

async fn run(submit: Submit, mut rx: mpsc::UnboundedReceiver<(Command, Waiter)>) {
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let Some(first) = rx.recv().await else {
            return;
        };
        let mut bytes = first.0.approx_size();
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH_COMMANDS && bytes < MAX_BATCH_BYTES {
            match rx.try_recv() {
                Ok(item) => {
                    bytes += item.0.approx_size();
                    batch.push(item);
                }
                Err(_) => break,
            }
        }
        let submit = submit.clone();
        tokio::spawn(async move {
            propose_batch(&submit, batch).await;
            drop(permit);
        });
    }
}

async fn propose_batch(submit: &Submit, mut batch: Vec<(Command, Waiter)>) {
    let (command, waiters): (Command, Vec<Waiter>) = if batch.len() == 1 {
        let (c, w) = batch.remove(0);
        (c, vec![w])
    } else {
        let (commands, waiters) = batch.into_iter().unzip();
        (Command::Batch(commands), waiters)
    };
    match submit(command).await {
        Ok((index, CommandResponse::Batch(responses))) if responses.len() == waiters.len() => {
            for (w, response) in waiters.into_iter().zip(responses) {
                let _ = w.send(Ok(WriteOutcome { index, response }));
            }
        }
        Ok((index, response)) if waiters.len() == 1 => {
            for w in waiters {
                let _ = w.send(Ok(WriteOutcome {
                    index,
                    response: response.clone(),
                }));
            }
        }
        Ok((index, response)) => {
            let e = format!(
                "batch at index {index} answered {response:?} for {} writes",
                waiters.len()
            );
            for w in waiters {
                let _ = w.send(Err(Error::Internal(e.clone())));
            }
        }
        Err(e) => {
            for w in waiters {
                let _ = w.send(Err(duplicate(&e)));
            }
        }
    }
}

async fn write(raft: &Raft, timeout: Duration, command: Command) -> Result<(u64, CommandResponse)> {
    match tokio::time::timeout(timeout, raft.client_write(command)).await {
        Err(_) => Err(Error::Unavailable(format!(
            "write not committed within {} ms; is a quorum of voters reachable?",
            timeout.as_millis()
        ))),
        Ok(Ok(resp)) => Ok((resp.log_id.index, resp.data)),
        Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => {
            Err(Error::NotLeader {
                leader: f.leader_id,
            })
        }
        Ok(Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e)))) => {
            Err(Error::Invalid(e.to_string()))
        }
        Ok(Err(RaftError::Fatal(f))) => Err(fatal(f)),
    }
}

/// Maps openraft's fatal error: a stopped Raft is a shutdown; anything else is storage.
pub(crate) fn fatal(f: openraft::error::Fatal<NodeId>) -> Error {
    match f {
        openraft::error::Fatal::Stopped => Error::Shutdown,
        other => Error::Storage(other.to_string()),
    }
}

/// The same error for each writer of a failed batch.
fn duplicate(e: &Error) -> Error {
    match e {
        Error::NotLeader { leader } => Error::NotLeader { leader: *leader },
        Error::Unavailable(s) => Error::Unavailable(s.clone()),
        Error::Invalid(s) => Error::Invalid(s.clone()),
        Error::InvalidSpec(errors) => Error::InvalidSpec(errors.clone()),
        Error::Storage(s) => Error::Storage(s.clone()),
        Error::Shutdown => Error::Shutdown,
        other => Error::Internal(other.to_string()),
    }
}
