//! `type: join`: a windowed stream–stream join of two keyed inputs (Flink's interval join).
//! A record of the first input (left) and one of the second (right) with the same key whose
//! event times are at most `within` apart make one output record, `{"key", "left",
//! "right"}`, with the later of the two event times. With `how: left`, a left record that
//! found no partner is emitted once the watermark has passed its time plus `within` (so no
//! partner can come any more), with `"right": null`.
//!
//! Each partition keeps the records of its keys that could still find a partner, and
//! forgets them once the watermark is `within` past them; the state is checkpointed with the
//! partition's like a window's. A record behind the watermark is late: some of its partners
//! may be forgotten already, so it goes to the dead-letter sink with the reason instead of
//! joining with only some of them.
//!
//! ```yaml
//! transforms:
//!   - {id: orders_by_user, type: key_by, inputs: [orders], config: {key: .user}}
//!   - {id: clicks_by_user, type: key_by, inputs: [clicks], config: {key: .user}}
//!   - {id: joined, type: join, inputs: [orders_by_user, clicks_by_user],
//!      config: {within: 30s, how: left}}
//! ```

use std::collections::BTreeMap;

use jaq_json::Val;
use serde::{Deserialize, Serialize};

use super::transform::{Position, Record};

/// `type: join`: its config as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JoinSpec {
    /// How far apart (in event time) two records may be to join.
    pub within: String,
    /// `inner` (default): only pairs; `left`: also each left record without a partner.
    #[serde(default)]
    pub how: JoinHow,
}

/// Which records a join emits.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum JoinHow {
    #[default]
    Inner,
    Left,
}

/// Which input a batch came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Left,
    Right,
}

/// A join step, compiled.
pub struct Join {
    within: i64,
    how: JoinHow,
}

/// A record waiting for partners: its event time, value (as JSON text, as checkpoints keep
/// it) and whether it found one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Held {
    ts: i64,
    value: String,
    matched: bool,
}

/// The records of one key on each side.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Sides {
    left: Vec<Held>,
    right: Vec<Held>,
}

/// One partition's state of a join step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JoinState {
    keys: BTreeMap<Vec<u8>, Sides>,
    watermark: i64,
}

impl Default for JoinState {
    fn default() -> JoinState {
        JoinState {
            keys: BTreeMap::new(),
            watermark: i64::MIN,
        }
    }
}

impl JoinState {
    /// Records held, over both sides.
    pub fn held(&self) -> usize {
        self.keys
            .values()
            .map(|s| s.left.len() + s.right.len())
            .sum()
    }
}

fn parse(text: &str) -> Val {
    crate::pipeline::json::parse_strict(text.as_bytes()).unwrap_or(Val::Null)
}

fn field(name: &'static str) -> Val {
    Val::TStr(Box::new(bytes::Bytes::from_static(name.as_bytes())))
}

/// `{"key", "left", "right"}`.
fn pair(key: &[u8], left: Val, right: Val) -> Val {
    let mut map = jaq_json::Map::with_capacity_and_hasher(3, Default::default());
    map.insert(
        field("key"),
        Val::TStr(Box::new(bytes::Bytes::from(
            String::from_utf8_lossy(key).into_owned(),
        ))),
    );
    map.insert(field("left"), left);
    map.insert(field("right"), right);
    Val::Obj(map.into())
}

impl Join {
    pub fn compile(spec: &JoinSpec) -> Result<Join, String> {
        let d = super::spec::parse_duration(&spec.within).map_err(|e| format!("within: {e}"))?;
        let within = i64::try_from(d.as_millis()).map_err(|_| "within: too long".to_string())?;
        if within <= 0 {
            return Err("within: must be more than 0".into());
        }
        Ok(Join {
            within,
            how: spec.how,
        })
    }

    /// Joins each record of `side` with the other side's records of its key within reach,
    /// then holds it for the other side's records to come.
    pub fn add(
        &self,
        state: &mut JoinState,
        side: Side,
        records: Vec<Record>,
        out: &mut Vec<Record>,
        rejected: &mut Vec<(Record, String)>,
    ) {
        for record in records {
            let (Some(ts), Some(key)) = (record.event_time, record.key.clone()) else {
                let why = if record.event_time.is_none() {
                    "join: the record has no event time (set the pipeline's event_time)"
                } else {
                    "join: the record has no key (put a key_by before the join)"
                };
                rejected.push((record, why.into()));
                continue;
            };
            if ts < state.watermark {
                let why = format!(
                    "late: event time {ts} is behind the join's watermark {}: partners within {} ms of it may be gone",
                    state.watermark, self.within
                );
                rejected.push((record, why));
                continue;
            }
            let sides = state.keys.entry(key.clone()).or_default();
            let (others, mine) = match side {
                Side::Left => (&mut sides.right, &mut sides.left),
                Side::Right => (&mut sides.left, &mut sides.right),
            };
            let mut matched = false;
            for other in others.iter_mut() {
                if (other.ts - ts).abs() > self.within {
                    continue;
                }
                matched = true;
                other.matched = true;
                let theirs = parse(&other.value);
                let value = match side {
                    Side::Left => pair(&key, record.value.clone(), theirs),
                    Side::Right => pair(&key, theirs, record.value.clone()),
                };
                out.push(Record {
                    value,
                    event_time: Some(ts.max(other.ts)),
                    ..record.clone()
                });
            }
            mine.push(Held {
                ts,
                value: crate::pipeline::json::to_json(&record.value),
                matched,
            });
        }
    }

    /// Moves the watermark: forgets the records it is `within` past, and (for a left join)
    /// emits each left one that found no partner.
    pub fn advance(&self, state: &mut JoinState, watermark: i64, step: &str) -> Vec<Record> {
        if watermark <= state.watermark {
            return Vec::new();
        }
        state.watermark = watermark;
        let within = self.within;
        let gone = |h: &Held| h.ts.saturating_add(within) < watermark;
        let step: std::sync::Arc<str> = step.into();
        let mut out = Vec::new();
        state.keys.retain(|key, sides| {
            sides.left.retain(|h| {
                if !gone(h) {
                    return true;
                }
                if self.how == JoinHow::Left && !h.matched {
                    out.push(Record {
                        key: Some(key.clone()),
                        raw: None,
                        value: pair(key, parse(&h.value), Val::Null),
                        event_time: Some(h.ts),
                        headers: Vec::new(),
                        position: Position {
                            source: step.clone(),
                            split: step.clone(),
                            offset: (h.ts.max(0) as u64).into(),
                        },
                    });
                }
                false
            });
            sides.right.retain(|h| !gone(h));
            !(sides.left.is_empty() && sides.right.is_empty())
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::pipeline::transform::testing::{keyed, texts};

    fn rec(key: &str, ts: i64, json: &str) -> Record {
        keyed(key, Some(ts), json)
    }

    #[test]
    fn pairs_within_reach_join_and_unmatched_lefts_come_out_once_closed() {
        let j = Join::compile(&JoinSpec {
            within: "10s".into(),
            how: JoinHow::Left,
        })
        .expect("compiles");
        let mut s = JoinState::default();
        let (mut out, mut rejected) = (Vec::new(), Vec::new());
        j.add(
            &mut s,
            Side::Left,
            vec![
                rec("a", 1_000, "1"),
                rec("b", 2_000, "2"),
                rec("a", 30_000, "3"),
            ],
            &mut out,
            &mut rejected,
        );
        assert!(out.is_empty());
        j.add(
            &mut s,
            Side::Right,
            vec![rec("a", 5_000, r#""x""#), rec("a", 25_000, r#""y""#)],
            &mut out,
            &mut rejected,
        );
        assert_eq!(
            texts(&out),
            [
                r#"{"key":"a","left":1,"right":"x"}"#,
                r#"{"key":"a","left":3,"right":"y"}"#
            ]
        );
        assert_eq!(out[0].event_time, Some(5_000), "the later time of the two");
        out.clear();
        // The watermark passes b's reach: b comes out alone; a at 1 s matched, so it does not.
        let closed = j.advance(&mut s, 13_000, "joined");
        assert_eq!(texts(&closed), [r#"{"key":"b","left":2,"right":null}"#]);
        assert_eq!(s.held(), 3, "a@30s, x@5s, y@25s");
        // Late: behind the watermark.
        j.add(
            &mut s,
            Side::Right,
            vec![rec("b", 12_000, "9")],
            &mut out,
            &mut rejected,
        );
        assert_eq!(rejected.len(), 1);
        assert!(rejected[0].1.starts_with("late"), "{}", rejected[0].1);
        let bytes = rmp_serde::to_vec(&s).expect("encode");
        assert_eq!(
            rmp_serde::from_slice::<JoinState>(&bytes).expect("decode"),
            s
        );
        assert!(
            j.advance(&mut s, i64::MAX, "joined").is_empty(),
            "all matched"
        );
        assert_eq!(s.held(), 0);
    }
}
