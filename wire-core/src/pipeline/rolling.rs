//! `type: aggregate` after a `key_by`: running aggregates per key, without a window —
//! Flink's rolling aggregations (`keyBy(...).sum(...)`), Kafka Streams' `aggregate`. Each
//! record updates its key's aggregates (the same ones a window has: count, sum, min, max,
//! avg, first, last, count_distinct, collect) and goes on as `{"key", <field>: <value so
//! far>, ...}`, with the record's time and position. The running values are the
//! partition's state, checkpointed with it like a window's.
//!
//! ```yaml
//! # a running total and count per user, one output per order
//! - {type: aggregate, config: {aggregate: {total: {sum: .amount}, orders: count}}}
//! ```

use std::collections::HashMap;

use jaq_json::{Num, Val};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use super::transform::Record;
use super::window::{aggregate, values, Acc, Aggregate};

/// `type: aggregate`: its config as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RollingSpec {
    /// Output field -> aggregate, as a window's.
    pub aggregate: serde_json::Map<String, Json>,
}

/// An aggregate step, compiled.
pub struct Rolling {
    fields: Vec<Val>,
    aggregates: Vec<Aggregate>,
}

/// One partition's running aggregates of one step, per key.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RollingState {
    keys: HashMap<Vec<u8>, Vec<Acc>>,
}

impl RollingState {
    /// Keys with running values.
    pub fn keys(&self) -> usize {
        self.keys.len()
    }
}

fn text(s: &str) -> Val {
    Val::TStr(Box::new(bytes::Bytes::from(s.to_string())))
}

/// A JSON value as a record value.
fn val(j: &Json) -> Val {
    match j {
        Json::Null => Val::Null,
        Json::Bool(b) => Val::Bool(*b),
        Json::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => Val::Num(Num::Int(i as isize)),
            (None, Some(f)) => Val::Num(Num::Float(f)),
            _ => crate::pipeline::json::parse_strict(n.to_string().as_bytes()).unwrap_or(Val::Null),
        },
        Json::String(s) => text(s),
        Json::Array(items) => Val::Arr(items.iter().map(val).collect::<Vec<_>>().into()),
        Json::Object(map) => {
            let mut m = jaq_json::Map::with_capacity_and_hasher(map.len(), Default::default());
            for (k, v) in map {
                m.insert(text(k), val(v));
            }
            Val::Obj(m.into())
        }
    }
}

impl Rolling {
    pub fn compile(spec: &RollingSpec) -> Result<Rolling, String> {
        if spec.aggregate.is_empty() {
            return Err("aggregate: name at least one output field".into());
        }
        let mut aggregates = Vec::new();
        let mut fields = Vec::new();
        for (field, how) in &spec.aggregate {
            if field == "key" {
                return Err("aggregate.key: the name is taken by the key".into());
            }
            aggregates.push(aggregate(field, how).map_err(|e| format!("aggregate.{field}: {e}"))?);
            fields.push(text(field));
        }
        Ok(Rolling { fields, aggregates })
    }

    /// Adds each record to its key's running values and emits them; a record without a key,
    /// or one an aggregate cannot take, is rejected with the reason.
    pub fn add(
        &self,
        state: &mut RollingState,
        records: Vec<Record>,
        out: &mut Vec<Record>,
        rejected: &mut Vec<(Record, String)>,
    ) {
        for mut record in records {
            let Some(key) = record.key.as_deref() else {
                rejected.push((
                    record,
                    "aggregate: the record has no key (put a key_by before it)".into(),
                ));
                continue;
            };
            let got = match values(&self.aggregates, &record, "aggregate") {
                Ok(v) => v,
                Err(why) => {
                    rejected.push((record, why));
                    continue;
                }
            };
            let accs = match state.keys.get_mut(key) {
                Some(accs) => accs,
                None => state
                    .keys
                    .entry(key.to_vec())
                    .or_insert_with(|| self.aggregates.iter().map(Acc::of).collect()),
            };
            let mut map =
                jaq_json::Map::with_capacity_and_hasher(self.fields.len() + 1, Default::default());
            map.insert(
                text("key"),
                Val::TStr(Box::new(bytes::Bytes::from(
                    String::from_utf8_lossy(key).into_owned(),
                ))),
            );
            for ((acc, v), field) in accs.iter_mut().zip(&got).zip(&self.fields) {
                acc.add(v.as_ref());
                map.insert(field.clone(), val(&acc.value()));
            }
            record.value = Val::Obj(map.into());
            out.push(record);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::pipeline::transform::testing::{keyed, texts};

    fn rec(key: &str, json: &str) -> Record {
        keyed(key, None, json)
    }

    #[test]
    fn each_record_carries_its_keys_running_aggregates() {
        let spec: RollingSpec = serde_json::from_str(
            r#"{"aggregate": {"total": {"sum": ".n"}, "seen": "count", "top": {"max": ".n"}}}"#,
        )
        .expect("spec");
        let r = Rolling::compile(&spec).expect("compiles");
        let mut s = RollingState::default();
        let (mut out, mut rejected) = (Vec::new(), Vec::new());
        r.add(
            &mut s,
            vec![
                rec("a", r#"{"n": 2}"#),
                rec("b", r#"{"n": 5}"#),
                rec("a", r#"{"n": 1.5}"#),
                rec("a", r#"{"n": "x"}"#),
            ],
            &mut out,
            &mut rejected,
        );
        assert_eq!(
            texts(&out),
            [
                r#"{"key":"a","total":2,"seen":1,"top":2}"#,
                r#"{"key":"b","total":5,"seen":1,"top":5}"#,
                r#"{"key":"a","total":3.5,"seen":2,"top":2}"#
            ]
        );
        assert_eq!(rejected.len(), 1, "a string summed");
        assert_eq!(s.keys(), 2);
        let bytes = rmp_serde::to_vec(&s).expect("encode");
        assert_eq!(
            rmp_serde::from_slice::<RollingState>(&bytes).expect("decode"),
            s
        );
        assert!(Rolling::compile(&RollingSpec {
            aggregate: Default::default()
        })
        .is_err());
    }
}
