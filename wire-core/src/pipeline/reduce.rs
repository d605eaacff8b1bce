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
    init: Json,
    update: Jq,
}

/// One partition's reduce state: each key's value (as JSON text).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReduceState {
    keys: BTreeMap<Vec<u8>, String>,
}

impl ReduceState {
    /// Keys with state.
    pub fn keys(&self) -> usize {
        self.keys.len()
    }
}

fn val(j: &Json) -> jaq_json::Val {
    crate::pipeline::json::parse_strict(j.to_string().as_bytes()).unwrap_or(jaq_json::Val::Null)
}

impl Reduce {
    pub fn compile(spec: &ReduceSpec) -> Result<Reduce, String> {
        Ok(Reduce {
            init: spec.init.clone(),
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
            let current: Json = match state.keys.get(&key) {
                Some(text) => serde_json::from_str(text).unwrap_or(Json::Null),
                None => self.init.clone(),
            };
            let record_json: Json =
                serde_json::from_str(&crate::pipeline::json::to_json(&record.value))
                    .unwrap_or(Json::Null);
            let input = serde_json::json!({
                "key": String::from_utf8_lossy(&key),
                "state": current,
                "record": record_json,
            });
            let got = match self.update.run(val(&input)) {
                Ok(v) => v,
                Err(e) => {
                    rejected.push((record, format!("reduce: {e}")));
                    continue;
                }
            };
            let result: Json = match got.as_slice() {
                [v] => {
                    serde_json::from_str(&crate::pipeline::json::to_json(v)).unwrap_or(Json::Null)
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
            let Json::Object(mut result) = result else {
                rejected.push((
                    record,
                    "reduce: the update must give an object {state, emit}".into(),
                ));
                continue;
            };
            match result.remove("state") {
                None | Some(Json::Null) => {
                    state.keys.remove(&key);
                }
                Some(s) => {
                    state.keys.insert(key, s.to_string());
                }
            }
            let emitted = match result.remove("emit") {
                None | Some(Json::Null) => Vec::new(),
                Some(Json::Array(items)) => items,
                Some(one) => vec![one],
            };
            for e in emitted {
                let mut r = record.clone();
                r.value = val(&e);
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
