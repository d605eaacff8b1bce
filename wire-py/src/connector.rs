//! Python sources and sinks as registered connectors (`wire.sources.python`,
//! `wire.sinks.python`). Each runs on its partition's own thread, attaching to the
//! interpreter for each call.
//!
//! A source object has `read(split, position)` and, optionally, `splits()` (default
//! `["0"]`). `read` gets a split and the position it returned last (`None` at the start, or
//! the checkpointed one after a restart) and returns `(values, position)` — an empty list
//! when nothing is there now — or `None` once the split is finished. Positions are any JSON
//! value. A value that is not JSON goes to the dead-letter sink; an exception fails the
//! job, which restarts from its last checkpoint.
//!
//! Calls to one object never overlap: its partitions take turns (they share the object, and
//! the interpreter runs one call at a time anyway).
//!
//! A sink object has `write(values)`, which may return a list of `(index, reason)` for values
//! it refuses (dead letters), and, optionally, `flush()`, called before each checkpoint:
//! everything written must be durable when it returns.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use pyo3::prelude::*;
use pyo3::types::{PyList, PyTuple};
use wire_core::connectors::{
    BadInput, ConnectorError, ConnectorResult, ReadState, Sink, SinkContext, Source, SourceBatch,
    SourceContext,
};
use wire_core::pipeline::checkpoint::Offset;
use wire_core::pipeline::transform::{Position, Record};

use crate::convert::Converter;
use crate::transform::traceback;

/// A registered Python object and the lock its partitions take turns with.
pub struct Shared {
    obj: Py<PyAny>,
    turn: Mutex<()>,
}

impl Shared {
    pub fn new(obj: Py<PyAny>) -> Arc<Shared> {
        Arc::new(Shared {
            obj,
            turn: Mutex::new(()),
        })
    }

    /// Runs `f` with the object, alone among its partitions, attached to the interpreter.
    /// The turn is taken before the interpreter, so a partition waiting for its turn does
    /// not hold the interpreter from the one whose turn it is.
    fn with<T>(&self, f: impl FnOnce(Python<'_>, &Bound<'_, PyAny>) -> T) -> T {
        let _turn = self.turn.lock().unwrap_or_else(|p| p.into_inner());
        Python::attach(|py| f(py, self.obj.bind(py)))
    }
}

fn failed(py: Python<'_>, what: &str, name: &str, e: &PyErr) -> ConnectorError {
    ConnectorError::unavailable(traceback(py, what, name, e))
}

/// One split of a partition: its name, last position (JSON text) and whether it is done.
struct Split {
    name: Arc<str>,
    position: Option<String>,
    finished: bool,
}

/// A partition of a Python source.
pub struct PySource {
    name: String,
    step: Arc<str>,
    obj: Arc<Shared>,
    splits: Vec<Split>,
    next: usize,
}

/// Opens partition `ctx.partition` of the Python source `obj`.
pub fn open_source(
    name: &str,
    obj: &Arc<Shared>,
    ctx: &SourceContext<'_>,
) -> ConnectorResult<Box<dyn Source>> {
    obj.with(|py, o| {
        let all: Vec<String> = if o.hasattr("splits").unwrap_or(false) {
            o.call_method0("splits")
                .and_then(|s| s.extract())
                .map_err(|e| failed(py, "python source", name, &e))?
        } else {
            vec!["0".to_string()]
        };
        let parts = ctx.partitions.max(1) as usize;
        let splits = all
            .into_iter()
            .enumerate()
            .filter(|(i, _)| i % parts == ctx.partition as usize)
            .map(|(_, split)| Split {
                position: ctx.resume.get(&split).map(|o| o.to_string()),
                name: split.into(),
                finished: false,
            })
            .collect();
        Ok(Box::new(PySource {
            name: name.to_string(),
            step: ctx.step.into(),
            obj: obj.clone(),
            splits,
            next: 0,
        }) as Box<dyn Source>)
    })
}

impl Source for PySource {
    fn read(&mut self, _max: usize) -> ConnectorResult<SourceBatch> {
        let open: Vec<usize> = (0..self.splits.len())
            .filter(|i| !self.splits[*i].finished)
            .collect();
        let Some(&i) = open.iter().find(|i| **i >= self.next).or(open.first()) else {
            return Ok(SourceBatch {
                records: Vec::new(),
                bad: Vec::new(),
                state: ReadState::Finished,
            });
        };
        self.next = i + 1;
        let shared = self.obj.clone();
        shared.with(|py, obj| {
            let mut conv = Converter::default();
            let split = &mut self.splits[i];
            let position = match &split.position {
                Some(text) => {
                    let v = wire_core::pipeline::json::parse_strict(text.as_bytes())
                        .unwrap_or(jaq_json::Val::Null);
                    conv.python(py, &v)
                        .map_err(|e| failed(py, "python source", &self.name, &e))?
                }
                None => py.None().into_bound(py),
            };
            let got = obj
                .call_method1("read", (&*split.name, position))
                .map_err(|e| failed(py, "python source", &self.name, &e))?;
            if got.is_none() {
                split.finished = true;
                let state = if self.splits.iter().all(|s| s.finished) {
                    ReadState::Finished
                } else {
                    ReadState::More
                };
                return Ok(SourceBatch {
                    records: Vec::new(),
                    bad: Vec::new(),
                    state,
                });
            }
            let pair = got
                .cast::<PyTuple>()
                .ok()
                .filter(|t| t.len() == 2)
                .ok_or_else(|| {
                    ConnectorError::invalid(format!(
                        "python source '{}': read returns (values, position) or None",
                        self.name
                    ))
                })?;
            let values = pair
                .get_item(0)
                .map_err(|e| failed(py, "python source", &self.name, &e))?;
            let new_position = pair
                .get_item(1)
                .map_err(|e| failed(py, "python source", &self.name, &e))?;
            let text = conv
                .value(&new_position)
                .map(|v| wire_core::pipeline::json::to_json(&v))
                .map_err(|e| {
                    ConnectorError::invalid(format!(
                        "python source '{}': the position must be JSON: {e}",
                        self.name
                    ))
                })?;
            let at = Position {
                source: self.step.clone(),
                split: split.name.clone(),
                offset: Offset::Token(text.clone()),
            };
            let mut records = Vec::new();
            let mut bad = Vec::new();
            let items = values
                .try_iter()
                .map_err(|e| failed(py, "python source", &self.name, &e))?;
            for item in items {
                let item = item.map_err(|e| failed(py, "python source", &self.name, &e))?;
                match conv.value(&item) {
                    Ok(v) => records.push(Record::new(v, at.clone())),
                    Err(e) => bad.push(BadInput {
                        raw: item
                            .repr()
                            .map(|r| r.to_string())
                            .unwrap_or_default()
                            .into_bytes(),
                        position: at.clone(),
                        reason: format!("python source '{}': {e}", self.name),
                    }),
                }
            }
            split.position = Some(text);
            let state = if records.is_empty() && bad.is_empty() {
                ReadState::Idle
            } else {
                ReadState::More
            };
            Ok(SourceBatch {
                records,
                bad,
                state,
            })
        })
    }

    fn positions(&self) -> BTreeMap<String, Offset> {
        self.splits
            .iter()
            .filter_map(|s| Some((s.name.to_string(), Offset::Token(s.position.clone()?))))
            .collect()
    }
}

/// A partition of a Python sink.
pub struct PySink {
    name: String,
    obj: Arc<Shared>,
    rejected: Vec<(Record, String)>,
}

/// Opens a partition of the Python sink `obj`.
pub fn open_sink(
    name: &str,
    obj: &Arc<Shared>,
    _ctx: &SinkContext<'_>,
) -> ConnectorResult<Box<dyn Sink>> {
    Ok(Box::new(PySink {
        name: name.to_string(),
        obj: obj.clone(),
        rejected: Vec::new(),
    }))
}

impl Sink for PySink {
    fn write(&mut self, records: &[Record]) -> ConnectorResult<()> {
        if records.is_empty() {
            return Ok(());
        }
        let shared = self.obj.clone();
        shared.with(|py, obj| {
            let mut conv = Converter::default();
            let values = records
                .iter()
                .map(|r| conv.python(py, &r.value))
                .collect::<PyResult<Vec<_>>>()
                .map_err(|e| failed(py, "python sink", &self.name, &e))?;
            let list =
                PyList::new(py, values).map_err(|e| failed(py, "python sink", &self.name, &e))?;
            let got = obj
                .call_method1("write", (list,))
                .map_err(|e| failed(py, "python sink", &self.name, &e))?;
            if got.is_none() {
                return Ok(());
            }
            let refused: Vec<(usize, String)> = got.extract().map_err(|_| {
                ConnectorError::invalid(format!(
                    "python sink '{}': write returns None or a list of (index, reason)",
                    self.name
                ))
            })?;
            for (i, reason) in refused {
                if let Some(r) = records.get(i) {
                    self.rejected
                        .push((r.clone(), format!("python sink '{}': {reason}", self.name)));
                }
            }
            Ok(())
        })
    }

    fn pre_commit(&mut self, _epoch: u64) -> ConnectorResult<()> {
        let shared = self.obj.clone();
        shared.with(|py, o| {
            if o.hasattr("flush").unwrap_or(false) {
                o.call_method0("flush")
                    .map_err(|e| failed(py, "python sink", &self.name, &e))?;
            }
            Ok(())
        })
    }

    fn take_rejected(&mut self) -> Vec<(Record, String)> {
        std::mem::take(&mut self.rejected)
    }
}
