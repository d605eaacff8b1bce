//! `type: dedup` after a `key_by`: a record passes unless a record of the same key passed
//! less than `within` (of event time) before or after it; the others are dropped (the
//! step's counters show how many: records in minus records out). What the step remembers
//! per key is forgotten once the watermark is `within` past it, and is checkpointed with
//! the partition's state like a window's.
//!
//! ```yaml
//! - {type: dedup, config: {within: 10m}}
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::transform::Record;

/// `type: dedup`: its config as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DedupSpec {
    /// How far apart (in event time) two records of a key must be for both to pass.
    pub within: String,
}

/// A dedup step, compiled.
pub struct Dedup {
    within: i64,
}

/// One partition's memory of a dedup step: when each key last passed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DedupState {
    last: BTreeMap<Vec<u8>, i64>,
    watermark: i64,
}

impl Default for DedupState {
    fn default() -> DedupState {
        DedupState {
            last: BTreeMap::new(),
            watermark: i64::MIN,
        }
    }
}

impl DedupState {
    /// Keys remembered.
    pub fn remembered(&self) -> usize {
        self.last.len()
    }
}

impl Dedup {
    pub fn compile(spec: &DedupSpec) -> Result<Dedup, String> {
        let d = super::spec::parse_duration(&spec.within).map_err(|e| format!("within: {e}"))?;
        let within = i64::try_from(d.as_millis()).map_err(|_| "within: too long".to_string())?;
        if within <= 0 {
            return Err("within: must be more than 0".into());
        }
        Ok(Dedup { within })
    }

    /// Passes the first record of each key in each stretch of `within`; a record without
    /// an event time or a key is rejected with the reason.
    pub fn add(
        &self,
        state: &mut DedupState,
        records: Vec<Record>,
        out: &mut Vec<Record>,
        rejected: &mut Vec<(Record, String)>,
    ) {
        for record in records {
            let (Some(ts), Some(key)) = (record.event_time, record.key.as_ref()) else {
                let why = if record.event_time.is_none() {
                    "dedup: the record has no event time (set the pipeline's event_time)"
                } else {
                    "dedup: the record has no key (put a key_by before the dedup)"
                };
                rejected.push((record, why.into()));
                continue;
            };
            match state.last.get(key) {
                Some(last) if (ts - *last).abs() < self.within => {}
                _ => {
                    state.last.insert(key.clone(), ts);
                    out.push(record);
                }
            }
        }
    }

    /// Forgets keys the watermark is `within` past.
    pub fn advance(&self, state: &mut DedupState, watermark: i64) {
        if watermark <= state.watermark {
            return;
        }
        state.watermark = watermark;
        let within = self.within;
        state
            .last
            .retain(|_, ts| ts.saturating_add(within) > watermark);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::transform::Position;

    fn rec(key: &str, ts: i64) -> Record {
        let mut r = Record::new(jaq_json::Val::Null, Position::default());
        r.key = Some(key.as_bytes().to_vec());
        r.event_time = Some(ts);
        r
    }

    #[test]
    fn the_first_of_a_key_within_the_stretch_passes_and_memory_expires() {
        let d = Dedup::compile(&DedupSpec {
            within: "10s".into(),
        })
        .expect("compiles");
        let mut s = DedupState::default();
        let (mut out, mut rejected) = (Vec::new(), Vec::new());
        d.add(
            &mut s,
            vec![
                rec("a", 1_000),
                rec("a", 5_000),
                rec("b", 5_000),
                rec("a", 11_000),
            ],
            &mut out,
            &mut rejected,
        );
        let passed: Vec<(Vec<u8>, Option<i64>)> = out
            .iter()
            .map(|r| (r.key.clone().unwrap(), r.event_time))
            .collect();
        assert_eq!(
            passed,
            [
                (b"a".to_vec(), Some(1_000)),
                (b"b".to_vec(), Some(5_000)),
                (b"a".to_vec(), Some(11_000))
            ]
        );
        d.advance(&mut s, 16_000);
        assert_eq!(s.remembered(), 1, "b is forgotten, a (11 s) kept");
        let mut no_time = rec("c", 0);
        no_time.event_time = None;
        d.add(&mut s, vec![no_time], &mut out, &mut rejected);
        assert_eq!(rejected.len(), 1);
        assert!(Dedup::compile(&DedupSpec {
            within: "0s".into()
        })
        .is_err());
    }
}
