//! Checkpoints: how far a partition got, as the replicated `checkpoints` table keeps it. A
//! checkpoint is proposed through Raft only once every sink has made durable (pre-committed)
//! everything read before the positions it names, so a partition restarted from it loses
//! nothing; a file sink's pending output of the same epoch is published once it commits.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::consensus::NodeId;

/// Source step id -> split (a file path, a topic partition) -> offset to resume at.
pub type Positions = BTreeMap<String, BTreeMap<String, Offset>>;

/// A place in a split: a number for sources that count (a byte offset, a Kafka offset, a
/// sequence number), an opaque token for those that do not (a MongoDB `_id` or change-stream
/// resume token, as extended JSON). Kept as a JSON number or string.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Offset {
    Num(u64),
    Token(String),
}

impl Offset {
    /// The number, for a source that counts.
    pub fn num(&self) -> Option<u64> {
        match self {
            Offset::Num(n) => Some(*n),
            Offset::Token(_) => None,
        }
    }

    /// The token, for a source that does not count.
    pub fn token(&self) -> Option<&str> {
        match self {
            Offset::Num(_) => None,
            Offset::Token(t) => Some(t),
        }
    }
}

impl Default for Offset {
    fn default() -> Self {
        Offset::Num(0)
    }
}

impl std::fmt::Display for Offset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Offset::Num(n) => write!(f, "{n}"),
            Offset::Token(t) => f.write_str(t),
        }
    }
}

impl From<u64> for Offset {
    fn from(n: u64) -> Self {
        Offset::Num(n)
    }
}

/// One partition's checkpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Counts up from 1 within a pipeline's life; a sink's output of epoch `e` is committed
    /// together with checkpoint `e`.
    pub epoch: u64,
    /// The pipeline version that ran when it was taken.
    pub version: u64,
    /// The node that took it.
    pub node: NodeId,
    /// Where to resume.
    pub positions: Positions,
    /// Milliseconds since the Unix epoch when it was taken.
    pub taken_at_ms: u64,
    /// Which node committed which epochs of the partition: `(node, first, last)`, oldest
    /// first, the last 32 tenures. Kept by the catalog (what a job proposes is ignored), so
    /// that a sink reopening the partition can tell a node's committed output from what a
    /// fenced node left behind.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tenures: Vec<(NodeId, u64, u64)>,
    /// The partition's operator state at the checkpoint (its open windows), if it has any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<serde_bytes::ByteBuf>,
}

/// How many tenures a checkpoint remembers.
pub const TENURES: usize = 32;

impl Checkpoint {
    /// Whether `node` committed `epoch` of this partition (as far as the remembered tenures
    /// go).
    pub fn committed(&self, node: NodeId, epoch: u64) -> bool {
        self.tenures
            .iter()
            .any(|(n, first, last)| *n == node && *first <= epoch && epoch <= *last)
    }

    /// The same checkpoint without the catalog's bookkeeping (what a job proposed).
    pub fn as_proposed(&self) -> Checkpoint {
        Checkpoint {
            tenures: Vec::new(),
            ..self.clone()
        }
    }

    /// This checkpoint as the catalog stores it after `previous`: the tenures carried over,
    /// with this node's extended or a new one begun.
    pub fn after(&self, previous: Option<&Checkpoint>) -> Checkpoint {
        let mut tenures = previous.map(|p| p.tenures.clone()).unwrap_or_default();
        match tenures.last_mut() {
            Some((n, _, last)) if *n == self.node => *last = self.epoch,
            _ => tenures.push((self.node, self.epoch, self.epoch)),
        }
        if tenures.len() > TENURES {
            tenures.drain(..tenures.len() - TENURES);
        }
        Checkpoint {
            tenures,
            ..self.as_proposed()
        }
    }
}

/// The positions of all `checkpoints`, merged: a split that moved between partitions (the
/// parallelism changed) resumes from the furthest offset any partition recorded for it, or,
/// for a token (which only its source can order), from the most recent checkpoint's.
pub fn merged_positions<'a>(checkpoints: impl IntoIterator<Item = &'a Checkpoint>) -> Positions {
    let mut by_time: Vec<&Checkpoint> = checkpoints.into_iter().collect();
    by_time.sort_by_key(|c| c.taken_at_ms);
    let mut out = Positions::new();
    for c in by_time {
        for (source, splits) in &c.positions {
            let entry = out.entry(source.clone()).or_default();
            for (split, offset) in splits {
                match (entry.get_mut(split), offset) {
                    (Some(Offset::Num(have)), Offset::Num(n)) => *have = (*have).max(*n),
                    _ => {
                        entry.insert(split.clone(), offset.clone());
                    }
                }
            }
        }
    }
    out
}

/// Milliseconds since the Unix epoch now.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64, split: &str, offset: Offset) -> Checkpoint {
        let mut positions = Positions::new();
        positions
            .entry("src".into())
            .or_default()
            .insert(split.into(), offset);
        Checkpoint {
            epoch: 1,
            version: 1,
            node: 1,
            positions,
            taken_at_ms: ms,
            tenures: Vec::new(),
            state: None,
        }
    }

    #[test]
    fn the_catalog_keeps_a_checkpoints_state() {
        let mut c = at(1, "a", Offset::Num(1));
        c.state = Some(serde_bytes::ByteBuf::from(vec![7]));
        assert_eq!(c.as_proposed().state, c.state);
        assert_eq!(c.after(None).state, c.state);
    }

    #[test]
    fn numbers_merge_to_the_furthest_and_tokens_to_the_latest() {
        let merged = merged_positions(&[
            at(30, "a", Offset::Num(5)),
            at(10, "a", Offset::Num(9)),
            at(20, "t", Offset::Token("new".into())),
            at(5, "t", Offset::Token("old".into())),
        ]);
        assert_eq!(merged["src"]["a"], Offset::Num(9));
        assert_eq!(merged["src"]["t"], Offset::Token("new".into()));
    }

    #[test]
    fn offsets_keep_their_kind_through_json_and_the_log_encoding() {
        let c = at(1, "t", Offset::Token(r#"{"$oid":"65a1"}"#.into()));
        let mut both = c.clone();
        both.positions
            .get_mut("src")
            .unwrap()
            .insert("n".into(), Offset::Num(42));
        let json = serde_json::to_value(&both).unwrap();
        assert_eq!(json["positions"]["src"]["n"], 42);
        assert_eq!(json["positions"]["src"]["t"], r#"{"$oid":"65a1"}"#);
        let packed = rmp_serde::to_vec_named(&both).unwrap();
        let back: Checkpoint = rmp_serde::from_slice(&packed).unwrap();
        assert_eq!(back, both);
    }
}
