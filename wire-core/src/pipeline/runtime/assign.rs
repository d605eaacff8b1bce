//! Where partitions run: a pure function from a pipeline, the members and the current
//! assignments to the assignments the leader should record. Stable: a partition stays where
//! it is while its node is a member; new or orphaned partitions go to the least-loaded
//! member. A keyed pipeline (its records move between partitions by key) keeps all its
//! partitions on one node; a pinned pipeline (`node:` in its spec) runs only on that node.

use std::collections::BTreeMap;

use crate::consensus::NodeId;

/// What the assigner needs to know of a pipeline.
#[derive(Debug, Clone)]
pub struct Want {
    pub parallelism: u32,
    /// All partitions on one node.
    pub together: bool,
    /// Only on this node.
    pub pin: Option<NodeId>,
}

/// The assignments for a pipeline, partition by partition; empty when no member can run it
/// (its pinned node is not a member). `load` counts partitions per node (of the pipelines
/// assigned before this one) and is updated with this pipeline's.
pub fn assign(
    want: &Want,
    members: &[NodeId],
    current: &BTreeMap<u32, NodeId>,
    load: &mut BTreeMap<NodeId, usize>,
) -> BTreeMap<u32, NodeId> {
    let mut out = BTreeMap::new();
    if members.is_empty() {
        return out;
    }
    let least_loaded = |load: &BTreeMap<NodeId, usize>| -> NodeId {
        members
            .iter()
            .copied()
            .min_by_key(|m| (load.get(m).copied().unwrap_or(0), *m))
            .unwrap_or(members[0])
    };
    let together = match want.pin {
        Some(pin) if members.contains(&pin) => Some(pin),
        Some(_) => return out,
        None if want.together => {
            // Keep the node most of its partitions are on, if it is still a member.
            let mut counts: BTreeMap<NodeId, usize> = BTreeMap::new();
            for n in current.values() {
                *counts.entry(*n).or_default() += 1;
            }
            let kept = counts
                .iter()
                .filter(|(n, _)| members.contains(n))
                .max_by_key(|(n, c)| (**c, std::cmp::Reverse(**n)))
                .map(|(n, _)| *n);
            Some(kept.unwrap_or_else(|| least_loaded(load)))
        }
        None => None,
    };
    for p in 0..want.parallelism {
        let node = match together {
            Some(n) => n,
            None => match current.get(&p) {
                Some(n) if members.contains(n) => *n,
                _ => least_loaded(load),
            },
        };
        *load.entry(node).or_default() += 1;
        out.insert(p, node);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn want(parallelism: u32) -> Want {
        Want {
            parallelism,
            together: false,
            pin: None,
        }
    }

    #[test]
    fn partitions_spread_and_stay_put() {
        let mut load = BTreeMap::new();
        let a = assign(&want(4), &[1, 2, 3], &BTreeMap::new(), &mut load);
        assert_eq!(a.values().copied().collect::<Vec<_>>(), [1, 2, 3, 1]);
        // Node 2 leaves: only its partition moves, to the least-loaded member.
        let mut load = BTreeMap::new();
        let b = assign(&want(4), &[1, 3], &a, &mut load);
        assert_eq!(b.values().copied().collect::<Vec<_>>(), [1, 3, 3, 1]);
        // A second pipeline fills the least-loaded nodes first.
        let mut load = BTreeMap::from([(1, 3), (2, 0), (3, 1)]);
        let c = assign(&want(2), &[1, 2, 3], &BTreeMap::new(), &mut load);
        assert_eq!(c.values().copied().collect::<Vec<_>>(), [2, 2]);
    }

    #[test]
    fn keyed_pipelines_stay_together_and_pins_are_obeyed() {
        let keyed = Want {
            parallelism: 3,
            together: true,
            pin: None,
        };
        let mut load = BTreeMap::from([(1, 5)]);
        let a = assign(&keyed, &[1, 2], &BTreeMap::new(), &mut load);
        assert_eq!(a.values().copied().collect::<Vec<_>>(), [2, 2, 2]);
        let b = assign(&keyed, &[1, 2, 3], &a, &mut BTreeMap::new());
        assert_eq!(
            a, b,
            "a keyed pipeline does not move while its node is a member"
        );

        let pinned = Want {
            parallelism: 2,
            together: false,
            pin: Some(3),
        };
        let p = assign(&pinned, &[1, 2, 3], &BTreeMap::new(), &mut BTreeMap::new());
        assert_eq!(p.values().copied().collect::<Vec<_>>(), [3, 3]);
        assert!(assign(&pinned, &[1, 2], &p, &mut BTreeMap::new()).is_empty());
    }
}
