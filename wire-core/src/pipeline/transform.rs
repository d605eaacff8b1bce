//! Records and the transforms that change them. A [`Transform`] takes a batch and, for each
//! record, yields zero or more records or rejects it with a reason (the runtime sends
//! rejected records to the dead-letter sink); a [`Chain`] fuses consecutive stateless steps
//! so a batch passes through all of them in one task. Rust closures, the built-in jq and
//! key_by, and (later) Python and C callbacks all plug in through the same trait.

use std::sync::Arc;

use jaq_json::Val;

use super::checkpoint::Offset;
use super::jq::Jq;

/// Where a record came from, so a checkpoint can say how far a partition got and a dead
/// letter can say which input it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    /// The source step's id (shared by every record of the split: cloning is a count bump).
    pub source: std::sync::Arc<str>,
    /// The split within the source (a file path, a topic partition).
    pub split: std::sync::Arc<str>,
    /// The place in the split (a byte offset, a Kafka offset, a MongoDB `_id`).
    pub offset: Offset,
}

impl Default for Position {
    fn default() -> Self {
        Position {
            source: "".into(),
            split: "".into(),
            offset: Offset::Num(0),
        }
    }
}

/// A record flowing through a pipeline.
#[derive(Debug, Clone, Default)]
pub struct Record {
    /// The routing key (set by `key_by` or by the source).
    pub key: Option<Vec<u8>>,
    /// The value: JSON, or raw bytes as a byte string. `null` while `raw` holds it unparsed.
    pub value: Val,
    /// The value as JSON text, not parsed yet: a source of JSON hands records over so when
    /// every step that reads them takes text ([`Transform::takes_raw`]), and a columnar step
    /// hands its outputs on so. A step or sink that reads values gets them parsed first
    /// ([`parse_raw`]); a file sink writes the text as it is.
    pub raw: Option<bytes::Bytes>,
    /// Event time, milliseconds since the Unix epoch.
    pub event_time: Option<i64>,
    pub headers: Vec<(String, Vec<u8>)>,
    pub position: Position,
}

impl Record {
    /// A record holding `value`, from `position`.
    pub fn new(value: Val, position: Position) -> Record {
        Record {
            value,
            position,
            ..Default::default()
        }
    }

    /// The value's JSON text: `raw` as it is, or the value written out.
    pub fn json(&self) -> std::borrow::Cow<'_, [u8]> {
        match &self.raw {
            Some(text) => std::borrow::Cow::Borrowed(text),
            None => {
                let mut out = Vec::with_capacity(64);
                self.write_json(&mut out);
                std::borrow::Cow::Owned(out)
            }
        }
    }

    /// Appends the value's JSON text to `out`: `raw` as it is, or the value written out.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        match &self.raw {
            Some(text) => out.extend_from_slice(text),
            None => crate::pipeline::json::write_json(&self.value, out),
        }
    }

    /// Parses `raw` into `value` (nothing to do without it); text that does not parse is
    /// kept, and the parser's reason returned.
    pub fn parse(&mut self) -> Result<(), String> {
        let Some(text) = self.raw.take() else {
            return Ok(());
        };
        match super::jq::parse_json(&text) {
            Ok(value) => {
                self.value = value;
                Ok(())
            }
            Err(reason) => {
                self.raw = Some(text);
                Err(reason)
            }
        }
    }
}

/// `batch` with every value parsed (see [`Record::raw`]); a record whose text does not parse
/// goes to `failed` with the reason.
pub fn parse_raw(batch: Vec<Record>, failed: &mut Vec<(Record, String)>) -> Vec<Record> {
    if batch.iter().all(|r| r.raw.is_none()) {
        return batch;
    }
    let mut parsed = Vec::with_capacity(batch.len());
    for mut r in batch {
        match r.parse() {
            Ok(()) => parsed.push(r),
            Err(reason) => failed.push((r, reason)),
        }
    }
    parsed
}

/// A record a step rejected, with the reason.
#[derive(Debug, Clone)]
pub struct Rejected {
    pub record: Record,
    /// The step that rejected it.
    pub step: String,
    pub reason: String,
}

/// A step that changes records. Implementations must be deterministic enough to be re-run
/// on records replayed after a restart (at-least-once delivery).
pub trait Transform: Send + Sync {
    /// Transforms `batch`: pushes the outputs of each record to `out` in order, and each
    /// record it cannot handle to `rejected` with the reason. Called from a pipeline task;
    /// may block briefly (the runtime runs slow transforms off its async threads).
    fn apply(
        &self,
        batch: Vec<Record>,
        out: &mut Vec<Record>,
        rejected: &mut Vec<(Record, String)>,
    );

    /// Set by a step that wants fuller batches than the sources read (a columnar Python
    /// function): the engine then holds the step's input until `size` records are there or
    /// the oldest has waited `max_wait`, and always hands over what it holds before a
    /// checkpoint barrier or a watermark passes the step, so nothing held is lost or late.
    fn batching(&self) -> Option<Batching> {
        None
    }

    /// Whether it reads records whose value is still JSON text ([`Record::raw`]) itself; if
    /// not (the default), the engine parses them before they reach it.
    fn takes_raw(&self) -> bool {
        false
    }
}

/// How a step wants its input gathered (see [`Transform::batching`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batching {
    /// Records per call, at most (a held batch is handed over when it reaches this).
    pub size: usize,
    /// How long the first record of a batch may wait for the rest.
    pub max_wait: std::time::Duration,
}

/// A per-record function as a transform: `Ok(outputs)` or `Err(reason)` for each record.
pub struct PerRecord<F>(pub F);

impl<F> Transform for PerRecord<F>
where
    F: Fn(&Record) -> Result<Vec<Record>, String> + Send + Sync,
{
    fn apply(
        &self,
        batch: Vec<Record>,
        out: &mut Vec<Record>,
        rejected: &mut Vec<(Record, String)>,
    ) {
        each_record(batch, out, rejected, &self.0);
    }
}

/// Runs `f` on each record of `batch`: its outputs go to `out`, a failure sends the record to
/// `rejected` with the reason.
fn each_record(
    batch: Vec<Record>,
    out: &mut Vec<Record>,
    rejected: &mut Vec<(Record, String)>,
    f: impl Fn(&Record) -> Result<Vec<Record>, String>,
) {
    for record in batch {
        match f(&record) {
            Ok(outputs) => out.extend(outputs),
            Err(reason) => rejected.push((record, reason)),
        }
    }
}

/// `type: jq`: each output of the program is a record carrying the input's key, time,
/// headers and position.
pub struct JqTransform(pub Jq);

impl Transform for JqTransform {
    fn apply(
        &self,
        batch: Vec<Record>,
        out: &mut Vec<Record>,
        rejected: &mut Vec<(Record, String)>,
    ) {
        for mut record in batch {
            if let Some(text) = record.raw.take() {
                match self.0.run_text(&text) {
                    Ok(Some(output)) => {
                        record.raw = Some(output);
                        out.push(record);
                        continue;
                    }
                    Ok(None) => continue,
                    Err(_) => {
                        record.raw = Some(text);
                        if let Err(reason) = record.parse() {
                            rejected.push((record, reason));
                            continue;
                        }
                    }
                }
            }
            // The program gets the value itself, not a copy: a native assignment then changes
            // it in place instead of copying the object first.
            match self.0.run_owned(std::mem::take(&mut record.value)) {
                Ok(values) => {
                    let mut values = values.into_iter();
                    let last = values.next_back();
                    out.extend(values.map(|value| Record {
                        value,
                        ..record.clone()
                    }));
                    if let Some(value) = last {
                        record.value = value;
                        out.push(record);
                    }
                }
                Err((reason, original)) => {
                    record.value = original;
                    rejected.push((record, reason));
                }
            }
        }
    }

    /// Programs that only filter and set fields run on records kept as text.
    fn takes_raw(&self) -> bool {
        self.0.takes_text()
    }
}

/// `type: key_by`: sets each record's key to the program's single output (a string's text,
/// or any other value's JSON).
pub struct KeyBy(pub Jq);

impl Transform for KeyBy {
    fn apply(
        &self,
        batch: Vec<Record>,
        out: &mut Vec<Record>,
        rejected: &mut Vec<(Record, String)>,
    ) {
        each_record(batch, out, rejected, |record| {
            let values = self.0.run(record.value.clone())?;
            match values.as_slice() {
                [key] => Ok(vec![Record {
                    key: Some(key_bytes(key)),
                    ..record.clone()
                }]),
                _ => Err(format!(
                    "key_by: the key expression gave {} values; it must give exactly one",
                    values.len()
                )),
            }
        });
    }
}

fn key_bytes(v: &Val) -> Vec<u8> {
    match v {
        Val::TStr(s) | Val::BStr(s) => s.to_vec(),
        other => other.to_string().into_bytes(),
    }
}

/// Consecutive stateless steps fused: a batch goes through every step in one call.
#[derive(Clone, Default)]
pub struct Chain {
    steps: Vec<(String, Arc<dyn Transform>)>,
}

impl Chain {
    /// Appends the step `id`.
    pub fn then(mut self, id: impl Into<String>, step: Arc<dyn Transform>) -> Chain {
        self.steps.push((id.into(), step));
        self
    }

    /// Runs `batch` through every step; returns the outputs of the last one and every record
    /// a step rejected (with the step's id).
    pub fn run(&self, batch: Vec<Record>) -> (Vec<Record>, Vec<Rejected>) {
        let mut current = batch;
        let mut rejected = Vec::new();
        for (id, step) in &self.steps {
            let mut out = Vec::with_capacity(current.len());
            let mut failed = Vec::new();
            step.apply(current, &mut out, &mut failed);
            rejected.extend(failed.into_iter().map(|(record, reason)| Rejected {
                record,
                step: id.clone(),
                reason,
            }));
            current = out;
        }
        (current, rejected)
    }
}

/// Records for the stateful steps' unit tests.
#[cfg(test)]
pub(crate) mod testing {
    use super::{Position, Record};

    /// A record of `key` with the JSON value `json` and, when given, event time `ts`.
    pub fn keyed(key: &str, ts: Option<i64>, json: &str) -> Record {
        let mut r = Record::new(
            crate::pipeline::json::parse_strict(json.as_bytes()).expect("json"),
            Position::default(),
        );
        r.key = Some(key.as_bytes().to_vec());
        r.event_time = ts;
        r
    }

    /// The records' values as JSON text.
    pub fn texts(records: &[Record]) -> Vec<String> {
        records
            .iter()
            .map(|r| crate::pipeline::json::to_json(&r.value))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::jq::parse_json;

    fn records(lines: &[&str]) -> Vec<Record> {
        lines
            .iter()
            .enumerate()
            .map(|(i, l)| {
                Record::new(
                    parse_json(l.as_bytes()).unwrap(),
                    Position {
                        source: "events".into(),
                        split: "events.jsonl".into(),
                        offset: Offset::Num(i as u64 * 100),
                    },
                )
            })
            .collect()
    }

    fn jq(code: &str) -> Arc<dyn Transform> {
        Arc::new(JqTransform(Jq::compile(code).unwrap()))
    }

    #[test]
    fn a_chain_runs_every_step_and_collects_rejections() {
        let chain = Chain::default()
            .then("big", jq("select(.amount > 5)"))
            .then("cents", jq(".cents = (.amount * 100 | floor)"))
            .then("user", Arc::new(KeyBy(Jq::compile(".user").unwrap())));
        let input = records(&[
            r#"{"user": "ada", "amount": 7.5}"#,
            r#"{"user": "bob", "amount": 2}"#,
            r#"{"user": "cy", "amount": "lots"}"#,
            r#"{"user": "ada", "amount": 10}"#,
        ]);
        let (out, rejected) = chain.run(input);
        let values: Vec<String> = out.iter().map(|r| r.value.to_string()).collect();
        assert_eq!(
            values,
            [
                r#"{"user":"ada","amount":7.5,"cents":750}"#,
                r#"{"user":"ada","amount":10,"cents":1000}"#
            ]
        );
        assert!(out.iter().all(|r| r.key.as_deref() == Some(&b"ada"[..])));
        assert_eq!(
            out[1].position.offset,
            Offset::Num(300),
            "outputs keep their input's position"
        );
        // "lots" > 5 is true in jq (strings sort after numbers); multiplying it fails.
        assert_eq!(rejected.len(), 1);
        assert_eq!(rejected[0].step, "cents");
        assert_eq!(rejected[0].record.position.offset, Offset::Num(200));
        assert!(
            rejected[0].reason.starts_with("jq:"),
            "{}",
            rejected[0].reason
        );
    }

    #[test]
    fn jq_runs_on_records_kept_as_text_and_parses_only_what_it_must() {
        let step = JqTransform(
            Jq::compile("select(.amount > 5) | .cents = (.amount * 100 | floor)").unwrap(),
        );
        assert!(step.takes_raw());
        assert!(!JqTransform(Jq::compile(".amount").unwrap()).takes_raw());
        let texts = [
            r#"{"user": "ada", "amount": 7.5, "tags": ["x"]}"#,
            r#"{"user": "bob", "amount": 2}"#,
            // A repeated key: parsed, and run on the value jaq builds.
            r#"{"amount": 1, "amount": 9}"#,
            r#"{"amount": "lots"}"#,
            r#"{"amount": oops}"#,
        ];
        let batch = texts
            .iter()
            .map(|t| Record {
                raw: Some(bytes::Bytes::from_static(t.as_bytes())),
                ..Record::default()
            })
            .collect();
        let (mut out, mut rejected) = (Vec::new(), Vec::new());
        step.apply(batch, &mut out, &mut rejected);
        let got: Vec<String> = out
            .iter()
            .map(|r| String::from_utf8(r.json().into_owned()).unwrap())
            .collect();
        // The text the step did not touch is kept as it was.
        assert_eq!(
            got,
            [
                r#"{"user": "ada", "amount": 7.5, "tags": ["x"],"cents":750}"#,
                r#"{"amount":9,"cents":900}"#,
            ]
        );
        assert!(out[0].raw.is_some() && out[1].raw.is_none());
        let reasons: Vec<(&str, bool)> = rejected
            .iter()
            .map(|(r, reason)| (reason.as_str(), r.raw.is_some()))
            .collect();
        assert_eq!(reasons.len(), 2, "{reasons:?}");
        assert!(reasons[0].0.starts_with("jq:"), "{reasons:?}");
        // Bad text is rejected with the parser's reason, and the text kept for the letter.
        assert!(
            reasons[1].0.starts_with("invalid JSON") && reasons[1].1,
            "{reasons:?}"
        );
    }

    #[test]
    fn closures_and_flat_maps_plug_in() {
        let split = PerRecord(|r: &Record| match &r.value {
            Val::Arr(items) => Ok(items
                .iter()
                .map(|v| Record {
                    value: v.clone(),
                    ..r.clone()
                })
                .collect()),
            other => Err(format!("expected an array, got {other}")),
        });
        let chain = Chain::default().then("split", Arc::new(split));
        let (out, rejected) = chain.run(records(&["[1, 2]", "{}", "[3]"]));
        let values: Vec<String> = out.iter().map(|r| r.value.to_string()).collect();
        assert_eq!(values, ["1", "2", "3"]);
        assert_eq!(rejected.len(), 1);
        assert_eq!(rejected[0].reason, "expected an array, got {}");
    }

    #[test]
    fn key_by_needs_exactly_one_key() {
        let chain = Chain::default().then("k", Arc::new(KeyBy(Jq::compile(".tags[]").unwrap())));
        let (out, rejected) = chain.run(records(&[
            r#"{"tags": ["a"]}"#,
            r#"{"tags": ["a", "b"]}"#,
            r#"{"tags": [7]}"#,
        ]));
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].key.as_deref(), Some(&b"a"[..]));
        assert_eq!(out[1].key.as_deref(), Some(&b"7"[..]));
        assert!(rejected[0].reason.contains("2 values"));
    }
}
