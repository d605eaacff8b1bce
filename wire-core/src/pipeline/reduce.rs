//! `type: reduce` after a `key_by`: state per key, updated by a jq program for each record
//! — Bytewax's `stateful_map`, without code. The program gets `{"key", "state", "record"}`
//! (`state` is `init` for a key seen first) and gives `{"state": <new>, "emit": <value, a
//! list of values, or null>}`; `"state": null` forgets the key. What it emits goes on as
//! records (with the input record's key, time and position). The state is the partition's,
//! checkpointed with it like a window's.
//!
//! ```yaml
//! # a running total per user, emitted with every order
//! - type: reduce
//!   config:
//!     init: 0
//!     update: '{state: (.state + .record.amount), emit: {user: .key, total: (.state + .record.amount)}}'
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use super::jq::Jq;
use super::transform::Record;
use jaq_json::Val;

/// `type: reduce`: its config as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReduceSpec {
    /// A key's state before its first record (default null).
    #[serde(default)]
    pub init: Json,
    /// jq: `{key, state, record}` -> `{state, emit}`.
    pub update: String,
}

/// A reduce step, compiled.
pub struct Reduce {
    init: Val,
    update: Jq,
}

/// One partition's reduce state: each key's value (kept as a value; checkpointed as JSON
/// text).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(into = "Stored", from = "Stored")]
pub struct ReduceState {
    keys: BTreeMap<Vec<u8>, Val>,
}

/// [`ReduceState`] as a checkpoint holds it.
#[derive(Clone, Serialize, Deserialize)]
struct Stored {
    keys: BTreeMap<Vec<u8>, String>,
}

impl From<ReduceState> for Stored {
    fn from(s: ReduceState) -> Stored {
        Stored {
            keys: s
                .keys
                .into_iter()
                .map(|(k, v)| (k, crate::pipeline::json::to_json(&v)))
                .collect(),
        }
    }
}

impl From<Stored> for ReduceState {
    fn from(s: Stored) -> ReduceState {
        ReduceState {
            keys: s
                .keys
                .into_iter()
                .map(|(k, v)| {
                    let v = crate::pipeline::json::parse_strict(v.as_bytes()).unwrap_or(Val::Null);
                    (k, v)
                })
                .collect(),
        }
    }
}

fn text(s: &'static str) -> Val {
    Val::TStr(Box::new(bytes::Bytes::from_static(s.as_bytes())))
}

impl ReduceState {
    /// Keys with state.
    pub fn keys(&self) -> usize {
        self.keys.len()
    }
}

fn val(j: &Json) -> Val {
    crate::pipeline::json::parse_strict(j.to_string().as_bytes()).unwrap_or(Val::Null)
}

impl Reduce {
    pub fn compile(spec: &ReduceSpec) -> Result<Reduce, String> {
        Ok(Reduce {
            init: val(&spec.init),
            update: Jq::compile(&spec.update).map_err(|e| format!("update: {e}"))?,
        })
    }

    /// Runs the update for each record, in order; what it emits goes to `out`.
    pub fn add(
        &self,
        state: &mut ReduceState,
        records: Vec<Record>,
        out: &mut Vec<Record>,
        rejected: &mut Vec<(Record, String)>,
    ) {
        for record in records {
            let Some(key) = record.key.clone() else {
                rejected.push((
                    record,
                    "reduce: the record has no key (put a key_by before it)".into(),
                ));
                continue;
            };
            let current = state.keys.get(&key).unwrap_or(&self.init).clone();
            let mut input = jaq_json::Map::with_capacity_and_hasher(3, Default::default());
            input.insert(
                text("key"),
                Val::TStr(Box::new(bytes::Bytes::from(key.clone()))),
            );
            input.insert(text("state"), current);
            input.insert(text("record"), record.value.clone());
            let got = match self.update.run(Val::Obj(input.into())) {
                Ok(v) => v,
                Err(e) => {
                    rejected.push((record, format!("reduce: {e}")));
                    continue;
                }
            };
            let result = match got.as_slice() {
                [Val::Obj(map)] => map.clone(),
                [_] => {
                    rejected.push((
                        record,
                        "reduce: the update must give an object {state, emit}".into(),
                    ));
                    continue;
                }
                _ => {
                    let why = format!(
                        "reduce: the update gave {} values, not one object",
                        got.len()
                    );
                    rejected.push((record, why));
                    continue;
                }
            };
            match result.get(&text("state")) {
                None | Some(Val::Null) => {
                    state.keys.remove(&key);
                }
                Some(s) => {
                    state.keys.insert(key, s.clone());
                }
            }
            let emitted: Vec<Val> = match result.get(&text("emit")) {
                None | Some(Val::Null) => Vec::new(),
                Some(Val::Arr(items)) => items.iter().cloned().collect(),
                Some(one) => vec![one.clone()],
            };
            for e in emitted {
                let mut r = record.clone();
                r.value = e;
                out.push(r);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::transform::Position;

    fn rec(key: &str, json: &str) -> Record {
        let mut r = Record::new(
            crate::pipeline::json::parse_strict(json.as_bytes()).expect("json"),
            Position::default(),
        );
        r.key = Some(key.as_bytes().to_vec());
        r
    }

    #[test]
    fn a_running_total_per_key_is_kept_emitted_and_forgotten() {
        let r = Reduce::compile(&ReduceSpec {
            init: Json::from(0),
            update: "if .record.reset then {state: null} else \
                     {state: (.state + .record.n), emit: {key: .key, total: (.state + .record.n)}} end"
                .into(),
        })
        .expect("compiles");
        let mut s = ReduceState::default();
        let (mut out, mut rejected) = (Vec::new(), Vec::new());
        r.add(
            &mut s,
            vec![
                rec("a", r#"{"n": 2}"#),
                rec("b", r#"{"n": 5}"#),
                rec("a", r#"{"n": 3}"#),
                rec("a", r#"{"reset": true}"#),
                rec("a", r#"{"n": 1}"#),
                rec("b", r#"{"n": "x"}"#),
            ],
            &mut out,
            &mut rejected,
        );
        let totals: Vec<String> = out
            .iter()
            .map(|r| crate::pipeline::json::to_json(&r.value))
            .collect();
        assert_eq!(
            totals,
            [
                r#"{"key":"a","total":2}"#,
                r#"{"key":"b","total":5}"#,
                r#"{"key":"a","total":5}"#,
                r#"{"key":"a","total":1}"#
            ]
        );
        assert_eq!(rejected.len(), 1, "a string added to a number");
        assert_eq!(s.keys(), 2);
        let bytes = rmp_serde::to_vec(&s).expect("encode");
        assert_eq!(
            rmp_serde::from_slice::<ReduceState>(&bytes).expect("decode"),
            s
        );
    }
}
