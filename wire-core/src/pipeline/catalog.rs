//! The pipeline catalog's rules: what each pipeline command does to the replicated state, as
//! the state machine applies it (deterministically, on every node). The state is reached
//! through [`CatalogState`], so the rules are tested here on a map and applied there on
//! redb.
//!
//! - A create is refused when the name is taken; an update of the spec a pipeline already
//!   runs changes nothing (no version, no restart).
//! - An assignment is refused from an assigner that saw another version (a stale leader).
//! - A checkpoint is fencing: refused for a partition not assigned to its node (the
//!   partition moved: the old owner commits nothing), or whose epoch does not advance; the
//!   same checkpoint applied again (a proposer retrying after a lost answer) is saved once.
//! - A graceful move is two steps: the assigner records a pending move of a partition to
//!   another node; its owner takes a final checkpoint, stops it, and hands it off, which
//!   assigns it to the target. The old owner stops before the new one starts: no gap in the
//!   checkpoints, no overlap in the output.
//! - A job opens a session before it reads where to resume: refused unless every partition
//!   it names is assigned to the node it names, it makes the job's session the only one
//!   whose checkpoints those partitions accept, and it answers with their checkpoints as of
//!   that point in the log. A commit that was still in flight from an older job of the same
//!   partitions is then refused rather than landing behind the new job's back.
//! - A delete removes the pipeline with its assignments, checkpoints, moves and sessions.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::checkpoint::Checkpoint;
use super::{DesiredState, PipelineRecord, PipelineSpec};
use crate::consensus::{CommandResponse, NodeId};

/// A partition's move to another node: pending (a hand-off its owner has yet to make) or,
/// once `done`, the last move made and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionMove {
    pub from: Option<NodeId>,
    pub to: NodeId,
    pub reason: String,
    pub done: bool,
}

/// The catalog's tables as the rules read and change them.
pub(crate) trait CatalogState {
    type Error;
    fn pipeline(&self, name: &str) -> Result<Option<PipelineRecord>, Self::Error>;
    fn assignments(&self, name: &str) -> Result<BTreeMap<u32, NodeId>, Self::Error>;
    fn checkpoints(&self, name: &str) -> Result<BTreeMap<u32, Checkpoint>, Self::Error>;
    fn set_pipeline(&mut self, record: &PipelineRecord) -> Result<(), Self::Error>;
    fn remove_pipeline(&mut self, name: &str);
    fn set_assignment(&mut self, name: &str, partition: u32, node: Option<NodeId>);
    fn set_checkpoint(
        &mut self,
        name: &str,
        partition: u32,
        checkpoint: Option<&Checkpoint>,
    ) -> Result<(), Self::Error>;
    fn moves(&self, name: &str) -> Result<BTreeMap<u32, PartitionMove>, Self::Error>;
    fn set_move(
        &mut self,
        name: &str,
        partition: u32,
        m: Option<&PartitionMove>,
    ) -> Result<(), Self::Error>;
    fn sessions(&self, name: &str) -> Result<BTreeMap<u32, u64>, Self::Error>;
    fn set_session(&mut self, name: &str, partition: u32, session: Option<u64>);
}

fn written(version: u64, created: bool, changed: bool) -> CommandResponse {
    CommandResponse::Pipeline {
        version,
        created,
        changed,
    }
}

/// Creates a pipeline at version 1, running; refused if the name is taken.
pub(crate) fn create<S: CatalogState>(
    state: &mut S,
    spec: &PipelineSpec,
    index: u64,
) -> Result<CommandResponse, S::Error> {
    if let Some(existing) = state.pipeline(&spec.name)? {
        return Ok(CommandResponse::PipelineExists {
            version: existing.version,
        });
    }
    state.set_pipeline(&PipelineRecord {
        spec: spec.clone(),
        version: 1,
        desired: DesiredState::Running,
        updated_index: index,
        created_index: index,
    })?;
    Ok(written(1, true, true))
}

/// Why `new` cannot take over the state `old` checkpointed, if it cannot: the state is
/// per key and per step, so the partitioning (parallelism), the event time and every step
/// up to the last stateful one must stay as they are; later steps, sinks and the rest may
/// change.
pub(crate) fn state_kept(old: &PipelineSpec, new: &PipelineSpec) -> Result<(), String> {
    let stateful = |s: &PipelineSpec| {
        s.transforms
            .iter()
            .rposition(|t| super::validate::STATEFUL_TRANSFORMS.contains(&t.kind.as_str()))
    };
    let Some(last) = stateful(old) else {
        return Ok(());
    };
    let why = if old.parallelism != new.parallelism {
        format!(
            "parallelism {} -> {} would move keys away from their state",
            old.parallelism, new.parallelism
        )
    } else if old.event_time != new.event_time {
        "its event_time changed".to_string()
    } else if new.transforms.len() <= last || old.transforms[..=last] != new.transforms[..=last] {
        format!(
            "its steps up to the last stateful one (transforms[{last}], '{}') changed",
            old.transforms[last].kind
        )
    } else {
        return Ok(());
    };
    Err(format!(
        "pipeline '{}' keeps state (window, dedup or reduce) that the new spec cannot take over: {why}; keep those as they are, or delete the pipeline and create it again to start without state",
        old.name
    ))
}

/// Stores a new version (creating the pipeline when `upsert`); the spec it already runs
/// changes nothing, and one that cannot take over the state it checkpointed is refused.
pub(crate) fn update<S: CatalogState>(
    state: &mut S,
    spec: &PipelineSpec,
    upsert: bool,
    index: u64,
) -> Result<CommandResponse, S::Error> {
    let existing = state.pipeline(&spec.name)?;
    if let Some(e) = &existing {
        let has_state = state
            .checkpoints(&spec.name)?
            .values()
            .any(|c| c.state.is_some());
        if has_state && e.spec != *spec {
            if let Err(reason) = state_kept(&e.spec, spec) {
                return Ok(CommandResponse::Refused { reason });
            }
        }
    }
    let record = match existing {
        None if !upsert => return Ok(CommandResponse::PipelineMissing),
        Some(e) if e.spec == *spec => return Ok(written(e.version, false, false)),
        Some(e) => PipelineRecord {
            spec: spec.clone(),
            version: e.version + 1,
            desired: e.desired,
            updated_index: index,
            created_index: e.created_index,
        },
        None => PipelineRecord {
            spec: spec.clone(),
            version: 1,
            desired: DesiredState::Running,
            updated_index: index,
            created_index: index,
        },
    };
    state.set_pipeline(&record)?;
    Ok(written(record.version, record.version == 1, true))
}

/// Changes what the cluster should do with a pipeline.
pub(crate) fn set_state<S: CatalogState>(
    state: &mut S,
    name: &str,
    desired: DesiredState,
    index: u64,
) -> Result<CommandResponse, S::Error> {
    let Some(mut record) = state.pipeline(name)? else {
        return Ok(CommandResponse::PipelineMissing);
    };
    record.desired = desired;
    record.updated_index = index;
    state.set_pipeline(&record)?;
    Ok(written(record.version, false, true))
}

/// Removes a pipeline with its assignments and checkpoints.
pub(crate) fn delete<S: CatalogState>(
    state: &mut S,
    name: &str,
) -> Result<CommandResponse, S::Error> {
    let existed = state.pipeline(name)?.is_some();
    state.remove_pipeline(name);
    for part in state.assignments(name)?.into_keys() {
        state.set_assignment(name, part, None);
    }
    for part in state.checkpoints(name)?.into_keys() {
        state.set_checkpoint(name, part, None)?;
    }
    for part in state.moves(name)?.into_keys() {
        state.set_move(name, part, None)?;
    }
    for part in state.sessions(name)?.into_keys() {
        state.set_session(name, part, None);
    }
    Ok(CommandResponse::PipelineDeleted { existed })
}

/// Replaces a pipeline's assignment of partitions to nodes and its pending moves (`moves`
/// also records moves made directly, `done`); refused from an assigner that saw another
/// version.
pub(crate) fn assign<S: CatalogState>(
    state: &mut S,
    name: &str,
    version: u64,
    assignments: &[(u32, NodeId)],
    moves: &[(u32, PartitionMove)],
) -> Result<CommandResponse, S::Error> {
    match state.pipeline(name)? {
        None => Ok(CommandResponse::PipelineMissing),
        Some(record) if record.version != version => Ok(CommandResponse::Refused {
            reason: format!(
                "pipeline '{name}' is at version {}, not {version}",
                record.version
            ),
        }),
        Some(_) => {
            let wanted: BTreeMap<u32, NodeId> = assignments.iter().copied().collect();
            for part in state.assignments(name)?.into_keys() {
                if !wanted.contains_key(&part) {
                    state.set_assignment(name, part, None);
                }
            }
            for part in state.sessions(name)?.into_keys() {
                if !wanted.contains_key(&part) {
                    state.set_session(name, part, None);
                }
            }
            for (part, node) in wanted {
                state.set_assignment(name, part, Some(node));
            }
            let given: BTreeMap<u32, &PartitionMove> = moves.iter().map(|(p, m)| (*p, m)).collect();
            for (part, m) in state.moves(name)? {
                if !m.done && !given.contains_key(&part) {
                    state.set_move(name, part, None)?;
                }
            }
            for (part, m) in given {
                state.set_move(name, part, Some(m))?;
            }
            Ok(CommandResponse::Assigned)
        }
    }
}

/// `node` hands off partitions it stopped (after their final checkpoint) to the targets of
/// their pending moves. Partitions it does not own, or with no pending move, are left as
/// they are; refused when none was handed off.
pub(crate) fn hand_off<S: CatalogState>(
    state: &mut S,
    name: &str,
    node: NodeId,
    partitions: &[u32],
) -> Result<CommandResponse, S::Error> {
    if state.pipeline(name)?.is_none() {
        return Ok(CommandResponse::PipelineMissing);
    }
    let owners = state.assignments(name)?;
    let moves = state.moves(name)?;
    let mut moved = 0;
    for part in partitions {
        let Some(m) = moves.get(part).filter(|m| !m.done && m.to != node) else {
            continue;
        };
        if owners.get(part) != Some(&node) {
            continue;
        }
        state.set_assignment(name, *part, Some(m.to));
        let done = PartitionMove {
            from: Some(node),
            done: true,
            ..m.clone()
        };
        state.set_move(name, *part, Some(&done))?;
        moved += 1;
    }
    if moved == 0 {
        return Ok(CommandResponse::Refused {
            reason: format!("node {node} has no pending move of {partitions:?} of '{name}'"),
        });
    }
    Ok(CommandResponse::Assigned)
}

/// Opens `session` for a job of pipeline version `version` that runs `owners` (partition ->
/// node), answering with the pipeline's checkpoints (see the module doc).
pub(crate) fn open_session<S: CatalogState>(
    state: &mut S,
    name: &str,
    session: u64,
    version: u64,
    owners: &[(u32, NodeId)],
) -> Result<CommandResponse, S::Error> {
    match state.pipeline(name)? {
        None => return Ok(CommandResponse::PipelineMissing),
        // A job of an older version (its open was still in flight): not this one's turn.
        Some(r) if r.version != version => {
            return Ok(CommandResponse::Refused {
                reason: format!(
                    "pipeline '{name}' is at version {}, not {version}",
                    r.version
                ),
            })
        }
        Some(_) => {}
    }
    let assigned = state.assignments(name)?;
    for (part, node) in owners {
        if assigned.get(part) != Some(node) {
            return Ok(CommandResponse::Refused {
                reason: format!(
                    "partition {part} of '{name}' is assigned to {:?}, not node {node}",
                    assigned.get(part)
                ),
            });
        }
    }
    for (part, _) in owners {
        state.set_session(name, *part, Some(session));
    }
    // All of them: a split that moved between partitions resumes from wherever any got.
    Ok(CommandResponse::SessionOpened {
        checkpoints: state.checkpoints(name)?.into_iter().collect(),
    })
}

/// Saves checkpoints of a job's partitions, all or none (see the module doc): each names the
/// node that ran its partition, which must own it, and `session` must be the partitions'.
pub(crate) fn checkpoint<S: CatalogState>(
    state: &mut S,
    name: &str,
    session: u64,
    checkpoints: &[(u32, Checkpoint)],
) -> Result<CommandResponse, S::Error> {
    if state.pipeline(name)?.is_none() {
        return Ok(CommandResponse::PipelineMissing);
    }
    let owners = state.assignments(name)?;
    let sessions = state.sessions(name)?;
    let current = state.checkpoints(name)?;
    if checkpoints
        .iter()
        .all(|(p, c)| current.get(p).map(Checkpoint::as_proposed) == Some(c.as_proposed()))
    {
        return Ok(CommandResponse::CheckpointSaved);
    }
    for (part, checkpoint) in checkpoints {
        let node = checkpoint.node;
        if owners.get(part) != Some(&node) {
            return Ok(CommandResponse::Refused {
                reason: format!(
                    "partition {part} of '{name}' is assigned to {:?}, not node {node}",
                    owners.get(part)
                ),
            });
        }
        if sessions.get(part) != Some(&session) {
            return Ok(CommandResponse::Refused {
                reason: format!(
                    "partition {part} of '{name}' is run by a newer job (session {:?}, not {session})",
                    sessions.get(part)
                ),
            });
        }
        if let Some(old) = current
            .get(part)
            .filter(|old| old.epoch >= checkpoint.epoch)
        {
            return Ok(CommandResponse::Refused {
                reason: format!(
                    "partition {part} of '{name}' is at epoch {}, not before {}",
                    old.epoch, checkpoint.epoch
                ),
            });
        }
    }
    for (part, checkpoint) in checkpoints {
        let stored = checkpoint.after(current.get(part));
        state.set_checkpoint(name, *part, Some(&stored))?;
    }
    Ok(CommandResponse::CheckpointSaved)
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use super::*;

    /// The catalog's tables in memory.
    #[derive(Default)]
    struct Tables {
        pipelines: BTreeMap<String, PipelineRecord>,
        assignments: BTreeMap<(String, u32), NodeId>,
        checkpoints: BTreeMap<(String, u32), Checkpoint>,
        moves: BTreeMap<(String, u32), PartitionMove>,
        sessions: BTreeMap<(String, u32), u64>,
    }

    fn rows<V: Clone>(map: &BTreeMap<(String, u32), V>, name: &str) -> BTreeMap<u32, V> {
        map.iter()
            .filter(|((n, _), _)| n == name)
            .map(|((_, p), v)| (*p, v.clone()))
            .collect()
    }

    impl CatalogState for Tables {
        type Error = Infallible;
        fn pipeline(&self, name: &str) -> Result<Option<PipelineRecord>, Infallible> {
            Ok(self.pipelines.get(name).cloned())
        }
        fn assignments(&self, name: &str) -> Result<BTreeMap<u32, NodeId>, Infallible> {
            Ok(rows(&self.assignments, name))
        }
        fn checkpoints(&self, name: &str) -> Result<BTreeMap<u32, Checkpoint>, Infallible> {
            Ok(rows(&self.checkpoints, name))
        }
        fn set_pipeline(&mut self, record: &PipelineRecord) -> Result<(), Infallible> {
            self.pipelines
                .insert(record.spec.name.clone(), record.clone());
            Ok(())
        }
        fn remove_pipeline(&mut self, name: &str) {
            self.pipelines.remove(name);
        }
        fn set_assignment(&mut self, name: &str, partition: u32, node: Option<NodeId>) {
            let key = (name.to_string(), partition);
            match node {
                Some(n) => self.assignments.insert(key, n),
                None => self.assignments.remove(&key),
            };
        }
        fn set_checkpoint(
            &mut self,
            name: &str,
            partition: u32,
            checkpoint: Option<&Checkpoint>,
        ) -> Result<(), Infallible> {
            let key = (name.to_string(), partition);
            match checkpoint {
                Some(c) => self.checkpoints.insert(key, c.clone()),
                None => self.checkpoints.remove(&key),
            };
            Ok(())
        }
        fn moves(&self, name: &str) -> Result<BTreeMap<u32, PartitionMove>, Infallible> {
            Ok(rows(&self.moves, name))
        }
        fn set_move(
            &mut self,
            name: &str,
            partition: u32,
            m: Option<&PartitionMove>,
        ) -> Result<(), Infallible> {
            let key = (name.to_string(), partition);
            match m {
                Some(m) => self.moves.insert(key, m.clone()),
                None => self.moves.remove(&key),
            };
            Ok(())
        }
        fn sessions(&self, name: &str) -> Result<BTreeMap<u32, u64>, Infallible> {
            Ok(rows(&self.sessions, name))
        }
        fn set_session(&mut self, name: &str, partition: u32, session: Option<u64>) {
            let key = (name.to_string(), partition);
            match session {
                Some(s) => self.sessions.insert(key, s),
                None => self.sessions.remove(&key),
            };
        }
    }

    fn spec(parallelism: u32) -> PipelineSpec {
        PipelineSpec::parse(&format!(
            r#"{{"name": "p", "parallelism": {parallelism},
                "sources": [{{"type": "generator", "config": {{}}}}],
                "sinks": [{{"type": "stdout", "inputs": ["source0"]}}]}}"#
        ))
        .expect("spec")
    }

    fn cp(epoch: u64, node: NodeId) -> Checkpoint {
        Checkpoint {
            epoch,
            version: 1,
            node,
            positions: Default::default(),
            taken_at_ms: epoch * 10,
            tenures: Vec::new(),
            state: None,
        }
    }

    fn ok<T>(r: Result<T, Infallible>) -> T {
        match r {
            Ok(v) => v,
            Err(e) => match e {},
        }
    }

    /// A pipeline with partitions 0 and 1 on node 1, whose job runs as session 1.
    fn running() -> Tables {
        let mut t = Tables::default();
        ok(create(&mut t, &spec(2), 1));
        ok(assign(&mut t, "p", 1, &[(0, 1), (1, 1)], &[]));
        ok(open_session(&mut t, "p", 1, 1, &[(0, 1), (1, 1)]));
        t
    }

    #[test]
    fn create_refuses_a_taken_name_and_update_of_the_same_spec_changes_nothing() {
        let mut t = running();
        assert_eq!(
            ok(create(&mut t, &spec(2), 5)),
            CommandResponse::PipelineExists { version: 1 }
        );
        assert_eq!(
            ok(update(&mut t, &spec(2), true, 6)),
            written(1, false, false)
        );
        assert_eq!(t.pipelines["p"].updated_index, 1, "nothing restarts");
        assert_eq!(
            ok(update(&mut t, &spec(3), false, 7)),
            written(2, false, true)
        );
        assert_eq!(t.pipelines["p"].updated_index, 7);
        let mut empty = Tables::default();
        assert_eq!(
            ok(update(&mut empty, &spec(2), false, 1)),
            CommandResponse::PipelineMissing
        );
        assert_eq!(
            ok(update(&mut empty, &spec(2), true, 1)),
            written(1, true, true)
        );
    }

    #[test]
    fn a_stale_assigner_is_refused() {
        let mut t = running();
        ok(update(&mut t, &spec(3), true, 2));
        let r = ok(assign(&mut t, "p", 1, &[(0, 2)], &[]));
        assert!(matches!(r, CommandResponse::Refused { .. }), "{r:?}");
        assert_eq!(t.assignments[&("p".into(), 0)], 1, "unchanged");
        assert_eq!(
            ok(assign(&mut t, "p", 2, &[(0, 2)], &[])),
            CommandResponse::Assigned
        );
        assert_eq!(rows(&t.assignments, "p"), BTreeMap::from([(0, 2)]));
    }

    #[test]
    fn checkpoints_are_fenced_by_owner_and_epoch_and_a_replay_is_saved_once() {
        let mut t = running();
        let first = [(0, cp(1, 1)), (1, cp(1, 1))];
        assert_eq!(
            ok(checkpoint(&mut t, "p", 1, &first)),
            CommandResponse::CheckpointSaved
        );
        assert_eq!(
            ok(checkpoint(&mut t, "p", 1, &first)),
            CommandResponse::CheckpointSaved
        );
        // Not advancing: refused, nothing written.
        let r = ok(checkpoint(&mut t, "p", 1, &[(0, cp(2, 1)), (1, cp(1, 1))]));
        assert!(matches!(&r, CommandResponse::Refused { reason } if reason.contains("epoch")));
        assert_eq!(t.checkpoints[&("p".into(), 0)].epoch, 1, "all or none");
        // The partition moved to node 2: node 1 is fenced off, node 2 goes on.
        ok(assign(&mut t, "p", 1, &[(0, 2), (1, 1)], &[]));
        let r = ok(checkpoint(&mut t, "p", 1, &[(0, cp(2, 1))]));
        assert!(matches!(&r, CommandResponse::Refused { reason } if reason.contains("assigned")));
        let r = ok(open_session(&mut t, "p", 2, 1, &[(0, 1)]));
        assert!(
            matches!(&r, CommandResponse::Refused { reason } if reason.contains("assigned")),
            "a session only for the owner"
        );
        assert_eq!(
            ok(open_session(&mut t, "p", 2, 1, &[(0, 2)])),
            CommandResponse::SessionOpened {
                checkpoints: vec![(0, cp(1, 1).after(None)), (1, cp(1, 1).after(None))]
            }
        );
        assert_eq!(
            ok(checkpoint(&mut t, "p", 2, &[(0, cp(2, 2))])),
            CommandResponse::CheckpointSaved
        );
        assert_eq!(t.checkpoints[&("p".into(), 0)].node, 2);
    }

    #[test]
    fn an_update_that_cannot_take_over_the_state_is_refused() {
        let windowed = |parallelism: u32, size: &str, sink: &str| {
            PipelineSpec::parse(&format!(
                r#"{{"name": "p", "parallelism": {parallelism},
                    "sources": [{{"type": "generator", "config": {{}}}}],
                    "transforms": [{{"type": "key_by", "config": {{"key": ".k"}}}},
                                   {{"type": "window", "config": {{"size": "{size}", "aggregate": {{"n": "count"}}}}}}],
                    "sinks": [{{"type": "{sink}"}}]}}"#
            ))
            .expect("spec")
        };
        let mut t = Tables::default();
        ok(create(&mut t, &windowed(2, "1m", "stdout"), 1));
        ok(assign(&mut t, "p", 1, &[(0, 1), (1, 1)], &[]));
        // No state checkpointed yet: anything goes.
        assert!(matches!(
            ok(update(&mut t, &windowed(3, "1m", "stdout"), false, 2)),
            CommandResponse::Pipeline { version: 2, .. }
        ));
        ok(assign(&mut t, "p", 2, &[(0, 1), (1, 1), (2, 1)], &[]));
        ok(open_session(&mut t, "p", 1, 2, &[(0, 1)]));
        let mut c = cp(1, 1);
        c.version = 2;
        c.state = Some(serde_bytes::ByteBuf::from(vec![1]));
        ok(checkpoint(&mut t, "p", 1, &[(0, c)]));
        for (bad, what) in [
            (windowed(4, "1m", "stdout"), "parallelism"),
            (windowed(3, "5m", "stdout"), "transforms[1]"),
        ] {
            let r = ok(update(&mut t, &bad, false, 3));
            assert!(
                matches!(&r, CommandResponse::Refused { reason } if reason.contains(what) && reason.contains("keeps state")),
                "{r:?}"
            );
        }
        assert_eq!(t.pipelines["p"].version, 2, "nothing changed");
        // A new sink after the window keeps the state.
        assert!(matches!(
            ok(update(&mut t, &windowed(3, "1m", "file"), false, 4)),
            CommandResponse::Pipeline { version: 3, .. }
        ));
    }

    #[test]
    fn a_commit_of_an_older_session_is_refused_and_one_job_commits_for_several_nodes() {
        let mut t = running();
        ok(assign(&mut t, "p", 1, &[(0, 1), (1, 2)], &[]));
        // One keyed job spans both nodes: its session covers both partitions, each
        // checkpoint names the node that ran it.
        ok(open_session(&mut t, "p", 7, 1, &[(0, 1), (1, 2)]));
        assert_eq!(
            ok(checkpoint(&mut t, "p", 7, &[(0, cp(1, 1)), (1, cp(1, 2))])),
            CommandResponse::CheckpointSaved
        );
        // A newer job opens a session: a commit the old one had in flight is refused.
        ok(open_session(&mut t, "p", 8, 1, &[(0, 1), (1, 2)]));
        let r = ok(checkpoint(&mut t, "p", 7, &[(0, cp(2, 1)), (1, cp(2, 2))]));
        assert!(
            matches!(&r, CommandResponse::Refused { reason } if reason.contains("newer job")),
            "{r:?}"
        );
        assert_eq!(t.checkpoints[&("p".into(), 0)].epoch, 1);
        assert_eq!(
            ok(checkpoint(&mut t, "p", 8, &[(0, cp(2, 1)), (1, cp(2, 2))])),
            CommandResponse::CheckpointSaved
        );
    }

    fn pending(to: NodeId) -> PartitionMove {
        PartitionMove {
            from: None,
            to,
            reason: "balancing".into(),
            done: false,
        }
    }

    #[test]
    fn a_hand_off_moves_a_partition_after_its_owner_s_final_checkpoint() {
        let mut t = running();
        ok(assign(
            &mut t,
            "p",
            1,
            &[(0, 1), (1, 1)],
            &[(1, pending(2))],
        ));
        // Still node 1's until handed off: its final checkpoint is taken.
        assert_eq!(
            ok(checkpoint(&mut t, "p", 1, &[(1, cp(1, 1))])),
            CommandResponse::CheckpointSaved
        );
        let r = ok(hand_off(&mut t, "p", 2, &[1]));
        assert!(
            matches!(r, CommandResponse::Refused { .. }),
            "not the owner"
        );
        let r = ok(hand_off(&mut t, "p", 1, &[0]));
        assert!(
            matches!(r, CommandResponse::Refused { .. }),
            "no move pending"
        );
        assert_eq!(
            ok(hand_off(&mut t, "p", 1, &[0, 1])),
            CommandResponse::Assigned
        );
        assert_eq!(rows(&t.assignments, "p"), BTreeMap::from([(0, 1), (1, 2)]));
        let done = &t.moves[&("p".into(), 1)];
        assert!(done.done && done.from == Some(1) && done.to == 2);
        // The old owner is fenced; the new one goes on from the final checkpoint.
        let r = ok(checkpoint(&mut t, "p", 1, &[(1, cp(2, 1))]));
        assert!(matches!(r, CommandResponse::Refused { .. }));
        ok(open_session(&mut t, "p", 2, 1, &[(1, 2)]));
        assert_eq!(
            ok(checkpoint(&mut t, "p", 2, &[(1, cp(2, 2))])),
            CommandResponse::CheckpointSaved
        );
        assert_eq!(
            t.checkpoints[&("p".into(), 1)].tenures,
            [(1, 1, 1), (2, 2, 2)],
            "who committed which epochs"
        );
        // A later assignment drops pending moves it does not list, keeps the history.
        ok(assign(
            &mut t,
            "p",
            1,
            &[(0, 1), (1, 2)],
            &[(0, pending(3))],
        ));
        ok(assign(&mut t, "p", 1, &[(0, 1), (1, 2)], &[]));
        assert_eq!(t.moves.len(), 1);
        assert!(t.moves[&("p".into(), 1)].done);
    }

    #[test]
    fn delete_removes_the_pipeline_with_its_rows_and_later_commands_find_nothing() {
        let mut t = running();
        ok(checkpoint(&mut t, "p", 1, &[(0, cp(1, 1))]));
        assert_eq!(
            ok(delete(&mut t, "p")),
            CommandResponse::PipelineDeleted { existed: true }
        );
        assert!(t.pipelines.is_empty() && t.assignments.is_empty() && t.checkpoints.is_empty());
        assert!(t.sessions.is_empty());
        assert_eq!(
            ok(checkpoint(&mut t, "p", 1, &[(0, cp(2, 1))])),
            CommandResponse::PipelineMissing
        );
        assert_eq!(
            ok(set_state(&mut t, "p", DesiredState::Paused, 9)),
            CommandResponse::PipelineMissing
        );
        assert_eq!(
            ok(delete(&mut t, "p")),
            CommandResponse::PipelineDeleted { existed: false }
        );
    }
}
