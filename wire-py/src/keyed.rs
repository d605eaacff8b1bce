//! A Python function with state per key, as a keyed function (`reduce` with `function`):
//! `fold` (`fn(state, value) -> new state`, which is also emitted) or `stateful_map`
//! (`fn(state, value) -> (new state, emit)`, Bytewax's contract). State is any JSON value;
//! `None` forgets the key. The engine calls it on the partition's own thread: one attach to
//! the interpreter per batch, and a key's state stays a Python object across the batch's
//! records (it is converted to a value after each call, so a state that is not JSON rejects
//! that record and leaves the key's state as it was).

use std::collections::HashMap;

use pyo3::prelude::*;
use pyo3::types::PyTuple;
use wire_core::pipeline::reduce::{KeyStates, KeyedFunction, Update, NO_KEY};
use wire_core::pipeline::transform::Record;

use crate::convert::Converter;
use crate::error::raise;
use crate::transform::traceback;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Fold,
    StatefulMap,
}

pub struct PyKeyed {
    name: String,
    mode: Mode,
    func: Py<PyAny>,
}

impl PyKeyed {
    pub fn new(name: &str, kind: &str, func: Py<PyAny>) -> PyResult<Self> {
        let mode = match kind {
            "fold" => Mode::Fold,
            "stateful_map" => Mode::StatefulMap,
            other => {
                return Err(raise(
                    "bad_request",
                    &format!("kind: '{other}' is not one of fold, stateful_map"),
                ))
            }
        };
        Ok(PyKeyed {
            name: name.to_string(),
            mode,
            func,
        })
    }

    /// The new state (None: forget) and what to emit, from the function's result.
    fn split<'py>(
        &self,
        result: Bound<'py, PyAny>,
    ) -> PyResult<(Bound<'py, PyAny>, Option<Bound<'py, PyAny>>)> {
        match self.mode {
            Mode::Fold => Ok((result.clone(), (!result.is_none()).then_some(result))),
            Mode::StatefulMap => {
                let pair = result.cast::<PyTuple>().ok().filter(|t| t.len() == 2);
                let Some(pair) = pair else {
                    return Err(pyo3::exceptions::PyTypeError::new_err(format!(
                        "a stateful_map function returns a tuple (new_state, emit), not {}",
                        result.get_type().name()?
                    )));
                };
                let emit = pair.get_item(1)?;
                Ok((pair.get_item(0)?, (!emit.is_none()).then_some(emit)))
            }
        }
    }
}

impl KeyedFunction for PyKeyed {
    fn apply(
        &self,
        states: &mut KeyStates<'_>,
        records: Vec<Record>,
        out: &mut Vec<Record>,
        rejected: &mut Vec<(Record, String)>,
    ) {
        Python::attach(|py| {
            let func = self.func.bind(py);
            let mut conv = Converter::default();
            // Each key's state as a Python object, once the batch touched it (None: forgotten).
            let mut live: HashMap<Vec<u8>, Option<Bound<'_, PyAny>>> = HashMap::new();
            for record in records {
                let Some(key) = record.key.clone() else {
                    rejected.push((record, NO_KEY.into()));
                    continue;
                };
                let called = (|| {
                    let state = match live.get(&key) {
                        Some(Some(s)) => s.clone(),
                        Some(None) => py.None().into_bound(py),
                        None => match states.get(&key) {
                            Some(v) => conv.python(py, v)?,
                            None => py.None().into_bound(py),
                        },
                    };
                    let value = conv.python(py, &record.value)?;
                    let (new, emit) = self.split(func.call1((state, value))?)?;
                    let stored = if new.is_none() {
                        None
                    } else {
                        Some(conv.value(&new)?)
                    };
                    let emitted = match (&emit, self.mode, &stored) {
                        (None, _, _) => None,
                        (Some(_), Mode::Fold, Some(v)) => Some(v.clone()),
                        (Some(e), _, _) => Some(conv.value(e)?),
                    };
                    Ok::<_, PyErr>((new, stored, emitted))
                })();
                match called {
                    Ok((new, stored, emitted)) => {
                        match stored {
                            Some(v) => {
                                states.update(key.clone(), Update::Set(v));
                                live.insert(key, Some(new));
                            }
                            None => {
                                states.update(key.clone(), Update::Forget);
                                live.insert(key, None);
                            }
                        }
                        if let Some(value) = emitted {
                            out.push(Record { value, ..record });
                        }
                    }
                    Err(e) => {
                        // The function may have changed the state object before it raised:
                        // the key's next record starts again from its stored state.
                        live.remove(&key);
                        let reason = traceback(py, "python keyed function", &self.name, &e);
                        rejected.push((record, reason));
                    }
                }
            }
        })
    }
}
