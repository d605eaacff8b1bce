//! Where partitions run: a pure function from a pipeline, the members and the current
//! placement to the placement the leader should record.
//!
//! - A partition stays where it is while its node is alive and not draining.
//! - A partition whose node is dead (silent past `failover_after_ms`) or gone is assigned at
//!   once to the least-loaded live member: its old owner cannot hand it off.
//! - A partition on a draining node, or on a node with two more partitions of the pipeline
//!   than another (a node joined or came back), gets a pending move: its owner takes a final
//!   checkpoint, stops it and hands it off (see `pipeline::catalog`). Balancing moves one
//!   partition per node pair at a time and only at a difference of two, so it settles and
//!   does not flap.
//! - A pinned pipeline (`node:` in its spec) runs only on that node. A keyed pipeline is
//!   placed like any other: its records cross nodes over the exchange (`super::exchange`).

use std::collections::BTreeMap;

use crate::consensus::NodeId;
use crate::pipeline::catalog::PartitionMove;

/// What the assigner needs to know of a pipeline.
#[derive(Debug, Clone)]
pub struct Want {
    pub parallelism: u32,
    /// Only on this node.
    pub pin: Option<NodeId>,
}

/// The members as the leader sees them.
#[derive(Debug, Clone, Default)]
pub struct Members {
    /// Alive, by id.
    pub live: Vec<NodeId>,
    /// Alive and not draining: may take partitions.
    pub eligible: Vec<NodeId>,
    /// Why a node that holds partitions cannot keep them (silent, gone, draining).
    pub why_not: BTreeMap<NodeId, String>,
}

impl Members {
    /// Every member alive and eligible.
    pub fn all(ids: &[NodeId]) -> Members {
        Members {
            live: ids.to_vec(),
            eligible: ids.to_vec(),
            why_not: BTreeMap::new(),
        }
    }

    fn why(&self, node: Option<NodeId>) -> String {
        match node {
            None => "unassigned".to_string(),
            Some(n) => self
                .why_not
                .get(&n)
                .cloned()
                .unwrap_or_else(|| format!("node {n} is not a live member")),
        }
    }
}

/// A pipeline's placement: partition -> node, and moves (pending hand-offs, and notes of
/// the direct reassignments made here).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Placement {
    pub assignments: BTreeMap<u32, NodeId>,
    pub moves: BTreeMap<u32, PartitionMove>,
}

impl Placement {
    /// The pending moves only.
    pub fn pending(&self) -> BTreeMap<u32, NodeId> {
        self.moves
            .iter()
            .filter(|(_, m)| !m.done)
            .map(|(p, m)| (*p, m.to))
            .collect()
    }
}

fn least_loaded(eligible: &[NodeId], load: &BTreeMap<NodeId, usize>) -> Option<NodeId> {
    eligible
        .iter()
        .copied()
        .min_by_key(|m| (load.get(m).copied().unwrap_or(0), *m))
}

/// The placement of a pipeline. `load` counts partitions per node (of the pipelines placed
/// before this one) and is updated with this pipeline's, counted where they will run.
pub fn place(
    want: &Want,
    members: &Members,
    current: &BTreeMap<u32, NodeId>,
    load: &mut BTreeMap<NodeId, usize>,
) -> Placement {
    let mut out = Placement::default();
    let live = |n: &NodeId| members.live.contains(n);
    let eligible = |n: &NodeId| members.eligible.contains(n);
    let note = |from: Option<NodeId>, to: NodeId, reason: String, done: bool| PartitionMove {
        from,
        to,
        reason,
        done,
    };

    if let Some(pin) = want.pin {
        // Pinned: there or nowhere (a pin outranks draining).
        if live(&pin) {
            for p in 0..want.parallelism {
                out.assignments.insert(p, pin);
                *load.entry(pin).or_default() += 1;
            }
        }
        return out;
    }

    // Where each partition will run: kept, reassigned now, or (later) moved. Kept ones
    // first, so that reassignments see the load they make.
    let mut dest: BTreeMap<u32, NodeId> = BTreeMap::new();
    for p in 0..want.parallelism {
        if let Some(n) = current.get(&p).copied().filter(|n| live(n)) {
            out.assignments.insert(p, n);
            if eligible(&n) || members.eligible.is_empty() {
                dest.insert(p, n);
                *load.entry(n).or_default() += 1;
            }
        }
    }
    for p in 0..want.parallelism {
        if out.assignments.contains_key(&p) {
            continue;
        }
        // Dead, gone or never placed: nobody can hand it off.
        let Some(target) = least_loaded(&members.eligible, load) else {
            continue;
        };
        let cur = current.get(&p).copied();
        out.assignments.insert(p, target);
        if cur.is_some() {
            out.moves
                .insert(p, note(cur, target, members.why(cur), true));
        }
        dest.insert(p, target);
        *load.entry(target).or_default() += 1;
    }
    // Partitions on live nodes that may not keep them (draining): handed off.
    for (&p, &n) in &out.assignments.clone() {
        if dest.contains_key(&p) {
            continue;
        }
        let Some(target) = least_loaded(&members.eligible, load) else {
            continue;
        };
        out.moves
            .insert(p, note(Some(n), target, members.why(Some(n)), false));
        dest.insert(p, target);
        *load.entry(target).or_default() += 1;
    }
    // Balance this pipeline over the eligible nodes.
    loop {
        let mut per: BTreeMap<NodeId, Vec<u32>> =
            members.eligible.iter().map(|n| (*n, Vec::new())).collect();
        for (&p, &n) in &dest {
            per.entry(n).or_default().push(p);
        }
        let most = per
            .iter()
            .max_by_key(|(n, ps)| (ps.len(), std::cmp::Reverse(**n)));
        let fewest = per.iter().min_by_key(|(n, ps)| (ps.len(), **n));
        let (Some((&from, ps)), Some((&to, few))) = (most, fewest) else {
            break;
        };
        if ps.len() < few.len() + 2 {
            break;
        }
        // The highest-numbered partition not already moving.
        let Some(&p) = ps.iter().rev().find(|p| !out.moves.contains_key(p)) else {
            break;
        };
        let reason = format!(
            "balancing: node {from} ran {} partitions, node {to} {}",
            ps.len(),
            few.len()
        );
        out.moves.insert(p, note(Some(from), to, reason, false));
        dest.insert(p, to);
        if let Some(l) = load.get_mut(&from) {
            *l = l.saturating_sub(1);
        }
        *load.entry(to).or_default() += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn want(parallelism: u32) -> Want {
        Want {
            parallelism,
            pin: None,
        }
    }

    fn nodes(a: &BTreeMap<u32, NodeId>) -> Vec<NodeId> {
        a.values().copied().collect()
    }

    #[test]
    fn partitions_spread_and_stay_put() {
        let mut load = BTreeMap::new();
        let a = place(
            &want(4),
            &Members::all(&[1, 2, 3]),
            &BTreeMap::new(),
            &mut load,
        );
        assert_eq!(nodes(&a.assignments), [1, 2, 3, 1]);
        assert!(a.moves.is_empty());
        let again = place(
            &want(4),
            &Members::all(&[1, 2, 3]),
            &a.assignments,
            &mut BTreeMap::new(),
        );
        assert_eq!(again, a, "stable");
        // A second pipeline fills the least-loaded nodes first.
        let mut load = BTreeMap::from([(1, 3), (2, 0), (3, 1)]);
        let c = place(
            &want(2),
            &Members::all(&[1, 2, 3]),
            &BTreeMap::new(),
            &mut load,
        );
        assert_eq!(nodes(&c.assignments), [2, 2]);
    }

    #[test]
    fn a_dead_node_s_partitions_are_reassigned_at_once_with_the_reason() {
        let current = BTreeMap::from([(0, 1), (1, 2), (2, 3), (3, 1), (4, 2), (5, 3)]);
        let members = Members {
            live: vec![1, 3],
            eligible: vec![1, 3],
            why_not: BTreeMap::from([(2, "node 2 silent for 3.1 s".to_string())]),
        };
        let p = place(&want(6), &members, &current, &mut BTreeMap::new());
        assert_eq!(nodes(&p.assignments), [1, 1, 3, 1, 3, 3]);
        assert_eq!(p.pending(), BTreeMap::new(), "no hand-off from a dead node");
        let note = &p.moves[&1];
        assert!(note.done && note.from == Some(2) && note.reason.contains("silent"));
    }

    #[test]
    fn a_returning_or_new_node_gets_its_share_by_hand_offs() {
        let current = BTreeMap::from([(0, 1), (1, 1), (2, 3), (3, 1), (4, 3), (5, 3)]);
        let p = place(
            &want(6),
            &Members::all(&[1, 2, 3]),
            &current,
            &mut BTreeMap::new(),
        );
        assert_eq!(p.assignments, current, "nothing moves until handed off");
        assert_eq!(p.pending(), BTreeMap::from([(3, 2), (5, 2)]));
        assert!(p.moves[&3].reason.contains("balancing"));
        // Once handed off, balanced: nothing more to do.
        let after = BTreeMap::from([(0, 1), (1, 1), (2, 3), (3, 2), (4, 3), (5, 2)]);
        let q = place(
            &want(6),
            &Members::all(&[1, 2, 3]),
            &after,
            &mut BTreeMap::new(),
        );
        assert!(q.moves.is_empty(), "{q:?}");
        // A difference of one is left alone.
        let odd = BTreeMap::from([(0, 1), (1, 1), (2, 2), (3, 3)]);
        let r = place(
            &want(4),
            &Members::all(&[1, 2, 3]),
            &odd,
            &mut BTreeMap::new(),
        );
        assert!(r.moves.is_empty());
    }

    #[test]
    fn a_draining_node_hands_everything_off_and_gets_nothing_new() {
        let current = BTreeMap::from([(0, 1), (1, 2), (2, 3)]);
        let members = Members {
            live: vec![1, 2, 3],
            eligible: vec![1, 3],
            why_not: BTreeMap::from([(2, "node 2 is draining".to_string())]),
        };
        let p = place(&want(3), &members, &current, &mut BTreeMap::new());
        assert_eq!(p.assignments, current);
        let pending = p.pending();
        assert_eq!(pending.len(), 1);
        assert!(pending[&1] == 1 || pending[&1] == 3);
        assert!(p.moves[&1].reason.contains("draining"));
        let fresh = place(&want(4), &members, &BTreeMap::new(), &mut BTreeMap::new());
        assert!(!fresh.assignments.values().any(|n| *n == 2));
    }

    #[test]
    fn pins_are_obeyed() {
        let pinned = Want {
            parallelism: 2,
            pin: Some(3),
        };
        let p = place(
            &pinned,
            &Members::all(&[1, 2, 3]),
            &BTreeMap::new(),
            &mut BTreeMap::new(),
        );
        assert_eq!(nodes(&p.assignments), [3, 3]);
        assert!(place(
            &pinned,
            &Members::all(&[1, 2]),
            &p.assignments,
            &mut BTreeMap::new()
        )
        .assignments
        .is_empty());
    }
}
