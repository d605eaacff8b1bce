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
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use super::jq::Jq;
use super::transform::Record;
use jaq_json::Val;

/// `type: reduce`: its config as written. Exactly one of `update` (jq) and `function` (a
/// keyed function registered on the node from Rust, Python or C).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReduceSpec {
    /// A key's state before its first record (default null).
    #[serde(default)]
    pub init: Json,
    /// jq: `{key, state, record}` -> `{state, emit}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update: Option<String>,
    /// The name of a registered keyed function.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<String>,
}

/// What a keyed function decided about a key's state.
#[derive(Debug, Clone, PartialEq)]
pub enum Update {
    /// Leave it as it was.
    Keep,
    /// Replace it.
    Set(Val),
    /// Forget the key (its next record starts from `init` again).
    Forget,
}

/// A function with state per key, registered on a node by name (Rust, Python or C) and used
/// as `{"type": "reduce", "config": {"function": name}}` after a `key_by` — Bytewax's
/// `stateful_map`. It gets a batch of records in order and the partition's key states, and
/// must handle a key's records one after the other (a record sees the state its key's
/// previous record left). It runs on the partition's own thread.
pub trait KeyedFunction: Send + Sync {
    fn apply(
        &self,
        states: &mut KeyStates<'_>,
        records: Vec<Record>,
        out: &mut Vec<Record>,
        rejected: &mut Vec<(Record, String)>,
    );
}

/// A per-record keyed function as a [`KeyedFunction`]: `f(key, state, value)` gives what
/// becomes of the state and the values to emit (each a record with the input's key, time
/// and position), or the reason to reject the record (its key's state stays as it was).
pub struct PerKey<F>(pub F);

impl<F> KeyedFunction for PerKey<F>
where
    F: Fn(&[u8], Option<&Val>, &Val) -> Result<(Update, Vec<Val>), String> + Send + Sync,
{
    fn apply(
        &self,
        states: &mut KeyStates<'_>,
        records: Vec<Record>,
        out: &mut Vec<Record>,
        rejected: &mut Vec<(Record, String)>,
    ) {
        for record in records {
            let Some(key) = record.key.clone() else {
                rejected.push((record, NO_KEY.into()));
                continue;
            };
            match (self.0)(&key, states.get(&key), &record.value) {
                Ok((update, emitted)) => {
                    states.update(key, update);
                    emit(&record, emitted, out);
                }
                Err(reason) => rejected.push((record, reason)),
            }
        }
    }
}

/// The reason a record without a key is rejected.
pub const NO_KEY: &str = "reduce: the record has no key (put a key_by before it)";

/// Pushes a record per emitted value, each a copy of `record` with that value.
pub fn emit(record: &Record, emitted: Vec<Val>, out: &mut Vec<Record>) {
    for value in emitted {
        let mut r = record.clone();
        r.value = value;
        out.push(r);
    }
}

/// A keyed function's view of a partition's key states: a key without state has the step's
/// `init` (when not null).
pub struct KeyStates<'a> {
    keys: &'a mut BTreeMap<Vec<u8>, Val>,
    init: &'a Val,
}

impl KeyStates<'_> {
    /// The key's state: its own, or the step's `init` (None when that is null).
    pub fn get(&self, key: &[u8]) -> Option<&Val> {
        self.keys
            .get(key)
            .or((!matches!(self.init, Val::Null)).then_some(self.init))
    }

    pub fn update(&mut self, key: Vec<u8>, update: Update) {
        match update {
            Update::Keep => {}
            Update::Set(Val::Null) | Update::Forget => {
                self.keys.remove(&key);
            }
            Update::Set(v) => {
                self.keys.insert(key, v);
            }
        }
    }
}

/// How a reduce step updates a key's state.
enum Updater {
    Jq(Jq),
    Function(Arc<dyn KeyedFunction>),
}

/// A reduce step, compiled.
pub struct Reduce {
    init: Val,
    update: Updater,
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
    /// A reduce step running its jq `update` (a spec naming a `function` needs
    /// [`Reduce::with_function`]).
    pub fn compile(spec: &ReduceSpec) -> Result<Reduce, String> {
        let update = match (&spec.update, &spec.function) {
            (Some(update), None) => {
                Updater::Jq(Jq::compile(update).map_err(|e| format!("update: {e}"))?)
            }
            (None, Some(name)) => {
                return Err(format!(
                    "function: '{name}' must be looked up among the node's registered functions"
                ))
            }
            _ => {
                return Err(
                    "give exactly one of update (a jq program) or function (a registered keyed function)"
                        .into(),
                )
            }
        };
        Ok(Reduce {
            init: val(&spec.init),
            update,
        })
    }

    /// A reduce step running the registered keyed function `function`.
    pub fn with_function(spec: &ReduceSpec, function: Arc<dyn KeyedFunction>) -> Reduce {
        Reduce {
            init: val(&spec.init),
            update: Updater::Function(function),
        }
    }

    /// Runs the update for each record, in order; what it emits goes to `out`.
    pub fn add(
        &self,
        state: &mut ReduceState,
        records: Vec<Record>,
        out: &mut Vec<Record>,
        rejected: &mut Vec<(Record, String)>,
    ) {
        let mut states = KeyStates {
            keys: &mut state.keys,
            init: &self.init,
        };
        match &self.update {
            Updater::Function(f) => f.apply(&mut states, records, out, rejected),
            Updater::Jq(jq) => PerKey(|key: &[u8], current: Option<&Val>, value: &Val| {
                jq_update(jq, key, current, value)
            })
            .apply(&mut states, records, out, rejected),
        }
    }
}

/// One record through a jq update: `{key, state, record}` -> `{state, emit}`.
fn jq_update(
    jq: &Jq,
    key: &[u8],
    current: Option<&Val>,
    value: &Val,
) -> Result<(Update, Vec<Val>), String> {
    let mut input = jaq_json::Map::with_capacity_and_hasher(3, Default::default());
    input.insert(
        text("key"),
        Val::TStr(Box::new(bytes::Bytes::from(key.to_vec()))),
    );
    input.insert(text("state"), current.cloned().unwrap_or(Val::Null));
    input.insert(text("record"), value.clone());
    let got = jq
        .run(Val::Obj(input.into()))
        .map_err(|e| format!("reduce: {e}"))?;
    let result = match got.as_slice() {
        [Val::Obj(map)] => map,
        [_] => return Err("reduce: the update must give an object {state, emit}".into()),
        _ => {
            return Err(format!(
                "reduce: the update gave {} values, not one object",
                got.len()
            ))
        }
    };
    let update = match result.get(&text("state")) {
        None | Some(Val::Null) => Update::Forget,
        Some(s) => Update::Set(s.clone()),
    };
    let emitted: Vec<Val> = match result.get(&text("emit")) {
        None | Some(Val::Null) => Vec::new(),
        Some(Val::Arr(items)) => items.iter().cloned().collect(),
        Some(one) => vec![one.clone()],
    };
    Ok((update, emitted))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::pipeline::transform::testing::{keyed, texts};

    fn rec(key: &str, json: &str) -> Record {
        keyed(key, None, json)
    }

    #[test]
    fn a_running_total_per_key_is_kept_emitted_and_forgotten() {
        let r = Reduce::compile(&ReduceSpec {
            init: Json::from(0),
            function: None,
            update: Some("if .record.reset then {state: null} else \
                     {state: (.state + .record.n), emit: {key: .key, total: (.state + .record.n)}} end"
                .into(),
            ),
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
        assert_eq!(
            texts(&out),
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
