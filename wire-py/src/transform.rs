//! A Python callable as a pipeline transform. The engine calls [`Transform::apply`] on a
//! pipeline's own source thread (never on a tokio worker): it attaches to the interpreter
//! once per batch, converts the records, calls the function, and converts back. A record whose
//! call raises is rejected with the traceback's text, so it goes to the dead-letter sink.

use jaq_json::Val;
use pyo3::prelude::*;
use pyo3::types::PyList;
use wire_core::pipeline::transform::{Record, Transform};

use crate::convert::Converter;
use crate::error::raise;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Returns the record's new value.
    Map,
    /// Returns whether to keep the record.
    Filter,
    /// Returns an iterable of values, each a record.
    FlatMap,
    /// Returns the record's key.
    KeyBy,
}

pub struct PyTransform {
    name: String,
    kind: Kind,
    func: Py<PyAny>,
    batch: bool,
}

impl PyTransform {
    pub fn new(name: &str, kind: &str, func: Py<PyAny>, batch: bool) -> PyResult<Self> {
        let kind = match kind {
            "map" => Kind::Map,
            "filter" => Kind::Filter,
            "flat_map" => Kind::FlatMap,
            "key_by" => Kind::KeyBy,
            other => {
                return Err(raise(
                    "bad_request",
                    &format!("kind: '{other}' is not one of map, filter, flat_map, key_by"),
                ))
            }
        };
        Ok(PyTransform {
            name: name.to_string(),
            kind,
            func,
            batch,
        })
    }

    /// The dead letter's reason for an exception: the traceback, as Python prints it.
    fn reason(&self, py: Python<'_>, e: &PyErr) -> String {
        traceback(py, "python transform", &self.name, e)
    }

    /// What the function's `result` for `record` makes of it.
    fn take<'py>(
        &self,
        py: Python<'py>,
        conv: &mut Converter<'py>,
        record: Record,
        result: &Bound<'py, PyAny>,
        out: &mut Vec<Record>,
        rejected: &mut Vec<(Record, String)>,
    ) {
        let made = match self.kind {
            Kind::Map => conv.value(result).map(Made::Value),
            Kind::Filter => result.is_truthy().map(Made::Keep),
            Kind::FlatMap => result
                .try_iter()
                .and_then(|items| items.map(|v| v.and_then(|v| conv.value(&v))).collect())
                .map(Made::Values),
            Kind::KeyBy => key_of(conv, result).map(Made::Key),
        };
        match made {
            Ok(Made::Value(value)) => out.push(Record { value, ..record }),
            Ok(Made::Keep(true)) => out.push(record),
            Ok(Made::Keep(false)) => {}
            Ok(Made::Values(values)) => out.extend(values.into_iter().map(|value| Record {
                value,
                ..record.clone()
            })),
            Ok(Made::Key(key)) => out.push(Record {
                key: Some(key),
                ..record
            }),
            Err(e) => {
                let reason = self.reason(py, &e);
                rejected.push((record, reason));
            }
        }
    }
}

/// The dead letter's reason for an exception raised by `what` `name`: the traceback, as
/// Python prints it.
pub fn traceback(py: Python<'_>, what: &str, name: &str, e: &PyErr) -> String {
    let printed = py
        .import("traceback")
        .and_then(|m| m.getattr("format_exception"))
        .and_then(|f| f.call1((e.get_type(py), e.value(py), e.traceback(py))))
        .and_then(|lines| {
            lines
                .try_iter()?
                .map(|l| l.and_then(|l| l.extract::<String>()))
                .collect::<PyResult<String>>()
        })
        .unwrap_or_else(|_| e.to_string());
    format!("{what} '{name}' raised: {}", printed.trim_end())
}

/// What a function made of one record.
enum Made {
    Value(Val),
    Keep(bool),
    Values(Vec<Val>),
    Key(Vec<u8>),
}

/// A key function's result as a key: a str's UTF-8, bytes as they are, anything else as
/// its JSON (as the jq `key_by` does).
fn key_of<'py>(conv: &mut Converter<'py>, result: &Bound<'py, PyAny>) -> PyResult<Vec<u8>> {
    if let Ok(s) = result.cast::<pyo3::types::PyString>() {
        return Ok(s.to_cow()?.into_owned().into_bytes());
    }
    if let Ok(b) = result.cast::<pyo3::types::PyBytes>() {
        return Ok(b.as_bytes().to_vec());
    }
    Ok(wire_core::pipeline::json::to_json(&conv.value(result)?).into_bytes())
}

impl Transform for PyTransform {
    fn apply(
        &self,
        batch: Vec<Record>,
        out: &mut Vec<Record>,
        rejected: &mut Vec<(Record, String)>,
    ) {
        Python::attach(|py| {
            let func = self.func.bind(py);
            let mut conv = Converter::default();
            if !self.batch {
                for record in batch {
                    match conv
                        .python(py, &record.value)
                        .and_then(|v| func.call1((v,)))
                    {
                        Ok(result) => self.take(py, &mut conv, record, &result, out, rejected),
                        Err(e) => {
                            let reason = self.reason(py, &e);
                            rejected.push((record, reason));
                        }
                    }
                }
                return;
            }
            let called = (|| {
                let values = batch
                    .iter()
                    .map(|r| conv.python(py, &r.value))
                    .collect::<PyResult<Vec<_>>>()?;
                let result = func.call1((PyList::new(py, values)?,))?;
                let items = result.try_iter()?.collect::<PyResult<Vec<_>>>()?;
                if items.len() != batch.len() {
                    return Err(pyo3::exceptions::PyValueError::new_err(format!(
                        "a batch function must return one item per input: got {} for {}",
                        items.len(),
                        batch.len()
                    )));
                }
                Ok(items)
            })();
            match called {
                Ok(items) => {
                    for (record, item) in batch.into_iter().zip(items) {
                        self.take(py, &mut conv, record, &item, out, rejected);
                    }
                }
                Err(e) => {
                    let reason = self.reason(py, &e);
                    rejected.extend(batch.into_iter().map(|r| (r, reason.clone())));
                }
            }
        })
    }
}
