//! Dead letters: a record a step or sink refused, or input that could not be read, with the
//! reason, as the dead-letter sink receives it.

use crate::pipeline::checkpoint::now_ms;
use crate::pipeline::transform::{Position, Record, Rejected};

/// A dead letter as the dead-letter sink receives it.
pub fn letter(
    pipeline: &str,
    partition: u32,
    step: &str,
    record: Option<&Record>,
    raw: &[u8],
    position: &Position,
    reason: &str,
) -> Record {
    let mut v = serde_json::json!({
        "pipeline": pipeline,
        "partition": partition,
        "step": step,
        "source": &*position.source,
        "split": &*position.split,
        "offset": position.offset,
        "error": reason,
        "time_ms": now_ms(),
    });
    match std::str::from_utf8(raw) {
        Ok(text) => v["raw"] = serde_json::Value::String(text.to_string()),
        Err(_) => {
            use base64::Engine;
            v["raw_base64"] =
                serde_json::Value::String(base64::engine::general_purpose::STANDARD.encode(raw));
        }
    }
    let value = crate::pipeline::jq::parse_json(v.to_string().as_bytes())
        .unwrap_or_else(|_| jaq_json::Val::Null);
    let mut out = Record::new(value, position.clone());
    if let Some(r) = record {
        out.key = r.key.clone();
    }
    out
}

/// The dead letters of records steps rejected.
pub fn of_rejected(pipeline: &str, partition: u32, rejected: &[Rejected]) -> Vec<Record> {
    rejected
        .iter()
        .map(|r| {
            letter(
                pipeline,
                partition,
                &r.step,
                Some(&r.record),
                &r.record.json(),
                &r.record.position,
                &r.reason,
            )
        })
        .collect()
}

/// Why a pipeline stops when a step whose policy is `fail` rejected a record.
pub fn failure(f: &Rejected) -> String {
    format!(
        "step '{}' failed on the record at {}:{} and its policy is fail: {}",
        f.step, f.record.position.split, f.record.position.offset, f.reason
    )
}
