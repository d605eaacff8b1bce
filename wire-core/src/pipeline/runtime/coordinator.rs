//! The checkpoint coordinator of a job, as a state machine without I/O: [`Coordinator::step`]
//! takes one [`Input`] (a tick, a worker's report, the answer to a commit, a stop request)
//! and returns the [`Action`]s the job's driver carries out (ask the sources for barriers,
//! commit a checkpoint, publish the sinks' output, release the sources, end). Every ordering
//! of barriers, failures, fencing, stops and finishes is thus testable without threads.
//!
//! A job is one node's partitions of a pipeline, or — for a keyed pipeline, whose records
//! cross between partitions — every partition on every node that runs one: the coordinator
//! then runs on one of them and the others join it ([`Input::Joined`]) before any
//! checkpoint begins.
//!
//! One checkpoint goes: `Barrier` → every source reports its positions and every sink
//! says its output up to the barrier is durable (pre-committed) → `Commit` → the log answers
//! committed (→ `Publish`, `Record`, `Release`), fenced (→ the job ends stopped: another
//! owner or a newer version holds the partitions), or unknown (→ retried: the commit is
//! idempotent).

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use super::live::JobState;
use crate::consensus::NodeId;
use crate::pipeline::checkpoint::{Checkpoint, Positions};

/// How long a stop's final checkpoint may take before the job ends without it.
pub const FINAL_CHECKPOINT_TIMEOUT: Duration = Duration::from_secs(10);
/// Wait before a commit whose outcome is unknown is tried again.
pub const COMMIT_RETRY: Duration = Duration::from_millis(500);

/// A future a [`CheckpointLog`] answers with.
pub type LogFuture<T> = Pin<Box<dyn Future<Output = Result<T, String>> + Send + 'static>>;

/// Where a job's checkpoints are committed (the node's Raft log in production).
pub trait CheckpointLog: Send + Sync {
    /// Opens `session` for a job running the partitions of `owners` (partition -> node):
    /// from then on only its checkpoints are accepted for them. Answers with their committed
    /// checkpoints at that point, or fenced (a partition is not assigned as named). `Err`
    /// means the outcome is unknown; opening again is safe.
    fn open(&self, session: u64, owners: Vec<(u32, NodeId)>) -> LogFuture<Opened>;
    /// Commits the checkpoints of the given partitions, all or none. `Err` means the outcome
    /// is unknown (no leader, a lost answer): committing the same checkpoints again is safe.
    fn commit(&self, session: u64, checkpoints: Vec<(u32, Checkpoint)>) -> LogFuture<Committed>;
}

/// A checkpoint log's answer to opening a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Opened {
    Yes(BTreeMap<u32, Checkpoint>),
    Fenced(String),
}

/// A checkpoint log's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Committed {
    Yes,
    /// Refused for good: the partitions moved, the pipeline changed or was deleted.
    Fenced(String),
}

/// What the coordinator is told.
#[derive(Debug)]
pub enum Input {
    /// The checkpoint interval elapsed; `progress` counts what every source read so far.
    Tick { progress: u64 },
    /// Stop (pause, update, move, shutdown) after a final checkpoint.
    Stop { reason: String, progress: u64 },
    /// Stop now, without a final checkpoint.
    Abort { reason: String },
    /// A node that runs some of the job's partitions joined the coordinator.
    Joined { node: NodeId },
    /// A source passed barrier `epoch`: it sent the barrier downstream, reports where it is
    /// and how much it has read in all, and waits to be released.
    Positions {
        partition: u32,
        epoch: u64,
        positions: Positions,
        read: u64,
    },
    /// A sink has everything up to barrier `epoch` durable as pending output.
    SinkReady { partition: u32, epoch: u64 },
    /// A partition's operator state at barrier `epoch` (sent before its `SinkReady`).
    State {
        partition: u32,
        epoch: u64,
        state: Vec<u8>,
    },
    /// Every source of a partition was read to its end, `read` records in all.
    Finished { partition: u32, read: u64 },
    /// A worker failed; `retry` says whether restarting may help.
    Failed { error: String, retry: bool },
    /// The answer to the last `Commit`.
    CommitDone(Result<Committed, String>),
    /// The wait asked for by `RetryCommitAfter` is over.
    RetryDue,
    /// The deadline asked for by `FinalDeadline` passed.
    DeadlinePassed,
}

/// What the driver must do, in order.
#[derive(Debug, PartialEq)]
pub enum Action {
    /// Ask every local source for barrier `epoch`.
    Barrier { epoch: u64 },
    /// Commit these checkpoints and report the answer as `Input::CommitDone`.
    Commit(Vec<(u32, Checkpoint)>),
    /// Report `Input::RetryDue` after this wait; the last commit's outcome was unknown.
    RetryCommitAfter { wait: Duration, error: String },
    /// Report `Input::DeadlinePassed` after this long, unless the job ended.
    FinalDeadline(Duration),
    /// The sinks publish the output of epoch (it is committed).
    Publish { epoch: u64 },
    /// Show these checkpoints as the partitions' last.
    Record(Vec<(u32, Checkpoint)>),
    /// Let the sources paused at the barrier go on.
    Release,
    /// The job is over: stop every worker and show this state.
    End(JobState),
}

/// Why the job ends once the current checkpoint is done.
#[derive(Debug, Clone)]
enum Ending {
    Stop(String),
    Finish,
}

#[derive(Debug)]
enum Phase {
    Idle,
    /// Barrier `epoch` was asked for; waiting for every source's positions and every sink.
    Aligning {
        epoch: u64,
        positions: BTreeMap<u32, (Positions, u64)>,
        ready: BTreeSet<u32>,
        states: BTreeMap<u32, Vec<u8>>,
    },
    /// A commit is in flight (or waits to be retried).
    Committing {
        checkpoints: Vec<(u32, Checkpoint)>,
        read: u64,
        waiting_retry: bool,
    },
    Ended,
}

/// Who the coordinator commits as.
#[derive(Debug, Clone)]
pub struct Identity {
    pub version: u64,
    /// The job's partitions and the node that runs each.
    pub owners: BTreeMap<u32, NodeId>,
    /// The node the coordinator runs on (every other node of `owners` must join it).
    pub node: NodeId,
}

impl Identity {
    fn partitions(&self) -> impl Iterator<Item = &u32> {
        self.owners.keys()
    }
}

/// The checkpoint protocol of one job (see the module doc).
#[derive(Debug)]
pub struct Coordinator {
    me: Identity,
    clock: fn() -> u64,
    /// The epoch the next checkpoint gets.
    epoch: u64,
    phase: Phase,
    /// Records read when the last committed checkpoint was taken.
    checkpointed: u64,
    finished: BTreeMap<u32, u64>,
    ending: Option<Ending>,
    /// Nodes of the job yet to join.
    waiting: BTreeSet<NodeId>,
    /// End once the commit in flight is answered, whatever the answer.
    hurry: bool,
}

impl Coordinator {
    /// A coordinator whose next checkpoint is `epoch`; `clock` gives the time (ms since the
    /// epoch) stamped on checkpoints.
    pub fn new(me: Identity, epoch: u64, clock: fn() -> u64) -> Coordinator {
        let waiting = me
            .owners
            .values()
            .copied()
            .filter(|n| *n != me.node)
            .collect();
        Coordinator {
            waiting,
            hurry: false,
            me,
            clock,
            epoch,
            phase: Phase::Idle,
            checkpointed: 0,
            finished: BTreeMap::new(),
            ending: None,
        }
    }

    pub fn ended(&self) -> bool {
        matches!(self.phase, Phase::Ended)
    }

    /// Takes one input; returns what to do.
    pub fn step(&mut self, input: Input) -> Vec<Action> {
        if self.ended() {
            return Vec::new();
        }
        match input {
            Input::Tick { progress } => match self.phase {
                Phase::Idle if progress != self.checkpointed && self.waiting.is_empty() => {
                    self.begin()
                }
                _ => Vec::new(),
            },
            // Until every node joined, nothing can be checkpointed: stop at once.
            Input::Stop { reason, .. } if !self.waiting.is_empty() => {
                self.end(JobState::Stopped { reason })
            }
            Input::Stop { reason, progress } => self.stop(reason, progress),
            Input::Abort { reason } => self.end_soon(reason),
            Input::Joined { node } => {
                self.waiting.remove(&node);
                Vec::new()
            }
            Input::Positions {
                partition,
                epoch,
                positions: pos,
                read,
            } => {
                if let Phase::Aligning {
                    epoch: e,
                    positions,
                    ..
                } = &mut self.phase
                {
                    if *e == epoch {
                        positions.insert(partition, (pos, read));
                    }
                }
                self.maybe_commit()
            }
            Input::State {
                partition,
                epoch,
                state,
            } => {
                if let Phase::Aligning {
                    epoch: e, states, ..
                } = &mut self.phase
                {
                    if *e == epoch {
                        states.insert(partition, state);
                    }
                }
                Vec::new()
            }
            Input::SinkReady { partition, epoch } => {
                if let Phase::Aligning {
                    epoch: e, ready, ..
                } = &mut self.phase
                {
                    if *e == epoch {
                        ready.insert(partition);
                    }
                }
                self.maybe_commit()
            }
            Input::Finished { partition, read } => {
                self.finished.insert(partition, read);
                if matches!(self.phase, Phase::Idle) {
                    self.after_checkpoint(Vec::new())
                } else {
                    Vec::new()
                }
            }
            Input::Failed { error, retry } => self.end(JobState::Failed { error, retry }),
            Input::CommitDone(answer) => self.on_commit(answer),
            Input::RetryDue => match &mut self.phase {
                Phase::Committing {
                    checkpoints,
                    waiting_retry,
                    ..
                } if *waiting_retry => {
                    *waiting_retry = false;
                    vec![Action::Commit(checkpoints.clone())]
                }
                _ => Vec::new(),
            },
            Input::DeadlinePassed => match self.ending.clone() {
                Some(Ending::Stop(reason)) => {
                    self.end_soon(format!("{reason} (the final checkpoint timed out)"))
                }
                _ => Vec::new(),
            },
        }
    }

    /// Ends without a (further) checkpoint — but a commit already sent may still be applied
    /// after it: its answer is awaited first, so the sinks publish what was committed.
    fn end_soon(&mut self, reason: String) -> Vec<Action> {
        match self.phase {
            Phase::Committing {
                waiting_retry: false,
                ..
            } => {
                self.ending = Some(Ending::Stop(reason));
                self.hurry = true;
                Vec::new()
            }
            _ => self.end(JobState::Stopped { reason }),
        }
    }

    fn begin(&mut self) -> Vec<Action> {
        let epoch = self.epoch;
        self.phase = Phase::Aligning {
            epoch,
            positions: BTreeMap::new(),
            ready: BTreeSet::new(),
            states: BTreeMap::new(),
        };
        vec![Action::Barrier { epoch }]
    }

    fn stop(&mut self, reason: String, progress: u64) -> Vec<Action> {
        if self.ending.is_some() {
            // Already ending (one deadline, armed once).
            return Vec::new();
        }
        // Another node's count may lag: a job spanning nodes always checkpoints.
        let alone = self.me.owners.values().all(|n| *n == self.me.node);
        match self.phase {
            Phase::Idle => {
                if alone && progress == self.checkpointed {
                    return self.end(JobState::Stopped { reason });
                }
                self.ending = Some(Ending::Stop(reason));
                let mut out = vec![Action::FinalDeadline(FINAL_CHECKPOINT_TIMEOUT)];
                out.extend(self.begin());
                out
            }
            Phase::Committing {
                waiting_retry: true,
                ..
            } => self.end(JobState::Stopped {
                reason: format!("{reason} (while a checkpoint could not commit)"),
            }),
            Phase::Aligning { .. } | Phase::Committing { .. } => {
                self.ending = Some(Ending::Stop(reason));
                vec![Action::FinalDeadline(FINAL_CHECKPOINT_TIMEOUT)]
            }
            Phase::Ended => Vec::new(),
        }
    }

    fn maybe_commit(&mut self) -> Vec<Action> {
        let Phase::Aligning {
            epoch,
            positions,
            ready,
            states,
        } = &mut self.phase
        else {
            return Vec::new();
        };
        let all = |set: &dyn Fn(u32) -> bool| self.me.partitions().all(|p| set(*p));
        if !all(&|p| positions.contains_key(&p)) || !all(&|p| ready.contains(&p)) {
            return Vec::new();
        }
        let taken_at_ms = (self.clock)();
        let read = positions.values().map(|(_, r)| r).sum();
        let checkpoints: Vec<(u32, Checkpoint)> = std::mem::take(positions)
            .into_iter()
            .map(|(p, (positions, _))| {
                let c = Checkpoint {
                    epoch: *epoch,
                    version: self.me.version,
                    node: self.me.owners.get(&p).copied().unwrap_or(self.me.node),
                    positions,
                    taken_at_ms,
                    tenures: Vec::new(),
                    state: states.remove(&p).map(serde_bytes::ByteBuf::from),
                };
                (p, c)
            })
            .collect();
        self.phase = Phase::Committing {
            checkpoints: checkpoints.clone(),
            read,
            waiting_retry: false,
        };
        vec![Action::Commit(checkpoints)]
    }

    fn on_commit(&mut self, answer: Result<Committed, String>) -> Vec<Action> {
        let Phase::Committing {
            checkpoints,
            read,
            waiting_retry,
        } = &mut self.phase
        else {
            return Vec::new();
        };
        match answer {
            Ok(Committed::Yes) => {
                let epoch = self.epoch;
                self.epoch += 1;
                self.checkpointed = *read;
                let checkpoints = std::mem::take(checkpoints);
                self.phase = Phase::Idle;
                let done = vec![Action::Publish { epoch }, Action::Record(checkpoints)];
                self.after_checkpoint(done)
            }
            Ok(Committed::Fenced(why)) => self.end(JobState::Stopped {
                reason: format!("checkpoint refused: {why}"),
            }),
            Err(error) if self.hurry => {
                let reason = match &self.ending {
                    Some(Ending::Stop(r)) => r.clone(),
                    _ => "stopped".into(),
                };
                self.end(JobState::Stopped {
                    reason: format!("{reason} (the last checkpoint's outcome is unknown: {error})"),
                })
            }
            Err(error) => {
                *waiting_retry = true;
                vec![Action::RetryCommitAfter {
                    wait: COMMIT_RETRY,
                    error,
                }]
            }
        }
    }

    /// Back in `Idle` (after a commit, or a finish seen while idle): end if the job is
    /// stopping or every partition finished and all it read is checkpointed, else go on.
    fn after_checkpoint(&mut self, mut out: Vec<Action>) -> Vec<Action> {
        let all_finished = self.me.partitions().all(|p| self.finished.contains_key(p));
        if all_finished && self.ending.is_none() {
            self.ending = Some(Ending::Finish);
        }
        match self.ending.clone() {
            Some(Ending::Stop(reason)) => {
                out.extend(self.end(JobState::Stopped { reason }));
            }
            Some(Ending::Finish) => {
                let read: u64 = self.finished.values().sum();
                if read == self.checkpointed {
                    out.extend(self.end(JobState::Finished));
                } else {
                    if !out.is_empty() {
                        out.push(Action::Release);
                    }
                    out.extend(self.begin());
                }
            }
            None => {
                if !out.is_empty() {
                    out.push(Action::Release);
                }
            }
        }
        out
    }

    fn end(&mut self, state: JobState) -> Vec<Action> {
        self.phase = Phase::Ended;
        vec![Action::End(state)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn co(partitions: &[u32]) -> Coordinator {
        let me = Identity {
            version: 3,
            node: 7,
            owners: partitions.iter().map(|p| (*p, 7)).collect(),
        };
        Coordinator::new(me, 5, || 1_000)
    }

    fn pos(offset: u64) -> Positions {
        BTreeMap::from([(
            "in".to_string(),
            BTreeMap::from([("a".to_string(), offset.into())]),
        )])
    }

    /// Every source and sink of `parts` answers barrier `epoch`; returns the last answer.
    fn align(c: &mut Coordinator, epoch: u64, parts: &[u32], read: u64) -> Vec<Action> {
        let mut last = Vec::new();
        for &p in parts {
            let got = c.step(Input::Positions {
                partition: p,
                epoch,
                positions: pos(read),
                read,
            });
            assert!(
                got.is_empty(),
                "a commit before every sink is ready: {got:?}"
            );
        }
        for &p in parts {
            last = c.step(Input::SinkReady {
                partition: p,
                epoch,
            });
        }
        last
    }

    fn committed(actions: &[Action]) -> Vec<(u32, Checkpoint)> {
        match actions {
            [Action::Commit(c)] => c.clone(),
            other => panic!("expected one commit, got {other:?}"),
        }
    }

    #[test]
    fn a_checkpoint_commits_only_after_every_barrier_and_sink_then_publishes_and_releases() {
        let mut c = co(&[0, 2]);
        assert!(
            c.step(Input::Tick { progress: 0 }).is_empty(),
            "nothing read"
        );
        assert_eq!(
            c.step(Input::Tick { progress: 10 }),
            [Action::Barrier { epoch: 5 }]
        );
        assert!(
            c.step(Input::Tick { progress: 20 }).is_empty(),
            "one checkpoint at a time"
        );
        // A sink ready for another epoch does not count.
        c.step(Input::SinkReady {
            partition: 0,
            epoch: 4,
        });
        c.step(Input::Positions {
            partition: 0,
            epoch: 5,
            positions: pos(4),
            read: 4,
        });
        assert!(c
            .step(Input::SinkReady {
                partition: 0,
                epoch: 5
            })
            .is_empty());
        c.step(Input::SinkReady {
            partition: 2,
            epoch: 5,
        });
        let commit = committed(&c.step(Input::Positions {
            partition: 2,
            epoch: 5,
            positions: pos(6),
            read: 6,
        }));
        assert_eq!(commit.len(), 2);
        assert!(commit
            .iter()
            .all(|(_, cp)| cp.epoch == 5 && cp.version == 3 && cp.node == 7));
        let done = c.step(Input::CommitDone(Ok(Committed::Yes)));
        assert_eq!(
            done,
            [
                Action::Publish { epoch: 5 },
                Action::Record(commit),
                Action::Release
            ]
        );
        // Nothing read since: no checkpoint. More read: the next epoch.
        assert!(c.step(Input::Tick { progress: 10 }).is_empty());
        assert_eq!(
            c.step(Input::Tick { progress: 11 }),
            [Action::Barrier { epoch: 6 }]
        );
    }

    #[test]
    fn an_unknown_outcome_is_retried_with_the_same_checkpoints_and_fencing_stops_the_job() {
        let mut c = co(&[1]);
        c.step(Input::Tick { progress: 3 });
        let commit = committed(&align(&mut c, 5, &[1], 3));
        let wait = c.step(Input::CommitDone(Err("no leader".into())));
        assert!(matches!(wait[..], [Action::RetryCommitAfter { .. }]));
        assert_eq!(c.step(Input::RetryDue), [Action::Commit(commit)]);
        let end = c.step(Input::CommitDone(Ok(Committed::Fenced(
            "partition 1 runs on node 2".into(),
        ))));
        assert_eq!(
            end,
            [Action::End(JobState::Stopped {
                reason: "checkpoint refused: partition 1 runs on node 2".into()
            })]
        );
        assert!(c.ended());
        assert!(c.step(Input::CommitDone(Ok(Committed::Yes))).is_empty());
    }

    #[test]
    fn a_failure_at_any_point_ends_the_job_without_committing() {
        for at in 0..3 {
            let mut c = co(&[0, 1]);
            c.step(Input::Tick { progress: 3 });
            if at >= 1 {
                c.step(Input::Positions {
                    partition: 0,
                    epoch: 5,
                    positions: pos(1),
                    read: 1,
                });
            }
            if at >= 2 {
                c.step(Input::SinkReady {
                    partition: 0,
                    epoch: 5,
                });
            }
            let end = c.step(Input::Failed {
                error: "disk full".into(),
                retry: true,
            });
            assert_eq!(
                end,
                [Action::End(JobState::Failed {
                    error: "disk full".into(),
                    retry: true
                })]
            );
            assert!(align(&mut c, 5, &[0, 1], 3).is_empty());
        }
    }

    #[test]
    fn a_stop_takes_a_final_checkpoint_when_something_moved() {
        let mut c = co(&[0]);
        assert_eq!(
            c.step(Input::Stop {
                reason: "paused".into(),
                progress: 0
            }),
            [Action::End(JobState::Stopped {
                reason: "paused".into()
            })],
            "nothing to checkpoint"
        );

        let mut c = co(&[0]);
        let out = c.step(Input::Stop {
            reason: "paused".into(),
            progress: 2,
        });
        assert_eq!(
            out,
            [
                Action::FinalDeadline(FINAL_CHECKPOINT_TIMEOUT),
                Action::Barrier { epoch: 5 }
            ]
        );
        committed(&align(&mut c, 5, &[0], 2));
        let done = c.step(Input::CommitDone(Ok(Committed::Yes)));
        assert!(matches!(done[0], Action::Publish { epoch: 5 }));
        assert_eq!(
            done.last(),
            Some(&Action::End(JobState::Stopped {
                reason: "paused".into()
            }))
        );
    }

    #[test]
    fn a_stop_mid_checkpoint_ends_after_it_or_at_the_deadline() {
        let mut c = co(&[0]);
        c.step(Input::Tick { progress: 2 });
        assert_eq!(
            c.step(Input::Stop {
                reason: "moved".into(),
                progress: 2
            }),
            [Action::FinalDeadline(FINAL_CHECKPOINT_TIMEOUT)]
        );
        assert_eq!(
            c.step(Input::DeadlinePassed),
            [Action::End(JobState::Stopped {
                reason: "moved (the final checkpoint timed out)".into()
            })]
        );

        // While a commit waits to be retried, a stop ends the job at once.
        let mut c = co(&[0]);
        c.step(Input::Tick { progress: 2 });
        align(&mut c, 5, &[0], 2);
        c.step(Input::CommitDone(Err("no quorum".into())));
        let end = c.step(Input::Stop {
            reason: "deleted".into(),
            progress: 2,
        });
        assert!(
            matches!(&end[..], [Action::End(JobState::Stopped { reason })] if reason.starts_with("deleted"))
        );
    }

    #[test]
    fn a_job_finishes_once_everything_it_read_is_checkpointed() {
        // Finished while idle, with unread progress: one more checkpoint, then finished.
        let mut c = co(&[0, 1]);
        assert!(c
            .step(Input::Finished {
                partition: 0,
                read: 4
            })
            .is_empty());
        assert_eq!(
            c.step(Input::Finished {
                partition: 1,
                read: 6
            }),
            [Action::Barrier { epoch: 5 }]
        );
        align(&mut c, 5, &[0, 1], 5);
        let done = c.step(Input::CommitDone(Ok(Committed::Yes)));
        assert_eq!(done.last(), Some(&Action::End(JobState::Finished)));

        // The last partition finished while a checkpoint was under way that already covers
        // everything: finished right after it.
        let mut c = co(&[0]);
        c.step(Input::Tick { progress: 9 });
        assert!(c
            .step(Input::Finished {
                partition: 0,
                read: 9
            })
            .is_empty());
        align(&mut c, 5, &[0], 9);
        let done = c.step(Input::CommitDone(Ok(Committed::Yes)));
        assert_eq!(done.last(), Some(&Action::End(JobState::Finished)));

        // ... or did not cover the last records: released, then one more checkpoint.
        let mut c = co(&[0]);
        c.step(Input::Tick { progress: 3 });
        c.step(Input::Finished {
            partition: 0,
            read: 9,
        });
        align(&mut c, 5, &[0], 3);
        let done = c.step(Input::CommitDone(Ok(Committed::Yes)));
        assert_eq!(
            &done[2..],
            [Action::Release, Action::Barrier { epoch: 6 }],
            "{done:?}"
        );
        align(&mut c, 6, &[0], 9);
        let done = c.step(Input::CommitDone(Ok(Committed::Yes)));
        assert_eq!(done.last(), Some(&Action::End(JobState::Finished)));

        // Nothing read at all: finished without a checkpoint.
        let mut c = co(&[0]);
        assert_eq!(
            c.step(Input::Finished {
                partition: 0,
                read: 0
            }),
            [Action::End(JobState::Finished)]
        );
    }

    #[test]
    fn a_job_over_several_nodes_waits_for_them_and_commits_each_partition_as_its_node() {
        let me = Identity {
            version: 3,
            node: 7,
            owners: BTreeMap::from([(0, 7), (1, 8)]),
        };
        let mut c = Coordinator::new(me, 5, || 1_000);
        assert!(
            c.step(Input::Tick { progress: 10 }).is_empty(),
            "node 8 not joined"
        );
        assert!(c.step(Input::Joined { node: 8 }).is_empty());
        assert_eq!(
            c.step(Input::Tick { progress: 10 }),
            [Action::Barrier { epoch: 5 }]
        );
        let got = align(&mut c, 5, &[0, 1], 10);
        let cps = committed(&got);
        assert_eq!(
            cps.iter().map(|(p, c)| (*p, c.node)).collect::<Vec<_>>(),
            [(0, 7), (1, 8)]
        );
    }

    #[test]
    fn an_abort_during_a_commit_waits_for_its_answer_and_a_stop_arms_one_deadline() {
        let mut c = co(&[0]);
        c.step(Input::Tick { progress: 1 });
        let got = align(&mut c, 5, &[0], 1);
        assert_eq!(committed(&got).len(), 1);
        assert!(
            c.step(Input::Abort {
                reason: "moved".into()
            })
            .is_empty(),
            "the commit in flight is awaited"
        );
        let end = c.step(Input::CommitDone(Ok(Committed::Yes)));
        assert!(end.contains(&Action::Publish { epoch: 5 }), "{end:?}");
        assert!(matches!(
            end.last(),
            Some(Action::End(JobState::Stopped { .. }))
        ));

        let mut c = co(&[0]);
        let first = c.step(Input::Stop {
            reason: "a".into(),
            progress: 4,
        });
        assert!(first.contains(&Action::FinalDeadline(FINAL_CHECKPOINT_TIMEOUT)));
        let again = c.step(Input::Stop {
            reason: "b".into(),
            progress: 4,
        });
        assert!(again.is_empty(), "{again:?}");
    }
}
