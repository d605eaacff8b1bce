//! Engine errors as Python exceptions. The classes live in `wire/errors.py`; this picks one by
//! the error kind's code (`wire_core::ErrorKind`, the same the HTTP API answers with), so a
//! call through `wire.Node` and the same call through `wire.Client` raise the same exception.

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use wire_core::Error;

/// The exception for an engine error.
pub fn to_py(e: Error) -> PyErr {
    let errors = match &e {
        Error::InvalidSpec(list) => serde_json::to_string(list).ok(),
        _ => None,
    };
    build(e.kind().code(), &e.to_string(), errors)
}

/// The exception for `code` (one of the HTTP API's error codes) with `detail`.
pub fn raise(code: &str, detail: &str) -> PyErr {
    build(code, detail, None)
}

fn build(code: &str, detail: &str, errors: Option<String>) -> PyErr {
    Python::attach(|py| {
        let made = py
            .import("wire.errors")
            .and_then(|m| m.getattr("_from_code"))
            .and_then(|f| f.call1((code, detail, errors)));
        match made {
            Ok(exc) => PyErr::from_value(exc),
            Err(_) => PyRuntimeError::new_err(format!("{code}: {detail}")),
        }
    })
}
