//! Records' JSON values (`jaq_json::Val`) to Python values and back: objects are dicts,
//! arrays lists, strings str, byte strings bytes, numbers int or float.

use std::collections::HashMap;

use jaq_json::{Num, Val};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};

/// Turns values into Python objects, sharing one Python string per distinct object key (keys
/// repeat across the records of a batch).
#[derive(Default)]
pub struct ToPy<'py> {
    keys: HashMap<Vec<u8>, Bound<'py, PyString>>,
}

fn text(b: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(b)
}

impl<'py> ToPy<'py> {
    pub fn value(&mut self, py: Python<'py>, v: &Val) -> PyResult<Bound<'py, PyAny>> {
        Ok(match v {
            Val::Null => py.None().into_bound(py),
            Val::Bool(b) => PyBool::new(py, *b).to_owned().into_any(),
            Val::Num(n) => match n {
                Num::Int(i) => i.into_pyobject(py)?.into_any(),
                Num::Float(f) => PyFloat::new(py, *f).into_any(),
                // Big integers and exact decimals: through their text, so nothing is rounded.
                Num::BigInt(_) => py.get_type::<PyInt>().call1((v.to_string(),))?,
                Num::Dec(d) => match d.parse::<i64>() {
                    Ok(i) => i.into_pyobject(py)?.into_any(),
                    Err(_) => PyFloat::new(py, d.parse::<f64>().unwrap_or(f64::NAN)).into_any(),
                },
            },
            Val::TStr(s) => PyString::new(py, &text(s)).into_any(),
            Val::BStr(b) => PyBytes::new(py, b).into_any(),
            Val::Arr(items) => {
                let list = PyList::empty(py);
                for item in items.iter() {
                    list.append(self.value(py, item)?)?;
                }
                list.into_any()
            }
            Val::Obj(map) => {
                let dict = PyDict::new(py);
                for (k, item) in map.iter() {
                    let key = match k {
                        Val::TStr(s) | Val::BStr(s) => self.key(py, s),
                        other => PyString::new(py, &other.to_string()),
                    };
                    dict.set_item(key, self.value(py, item)?)?;
                }
                dict.into_any()
            }
        })
    }

    fn key(&mut self, py: Python<'py>, s: &[u8]) -> Bound<'py, PyString> {
        if let Some(k) = self.keys.get(s) {
            return k.clone();
        }
        let k = PyString::new(py, &text(s));
        self.keys.insert(s.to_vec(), k.clone());
        k
    }
}

/// Turns a Python value into a record value; names what cannot be turned (a set, an object).
pub fn to_val(obj: &Bound<'_, PyAny>) -> PyResult<Val> {
    if obj.is_none() {
        return Ok(Val::Null);
    }
    if let Ok(s) = obj.cast::<PyString>() {
        return Ok(Val::from(s.to_cow()?.into_owned()));
    }
    if let Ok(b) = obj.cast::<PyBool>() {
        return Ok(Val::Bool(b.is_true()));
    }
    if let Ok(i) = obj.cast::<PyInt>() {
        return match i.extract::<isize>() {
            Ok(i) => Ok(Val::from(i)),
            Err(_) => wire_core::pipeline::jq::parse_json(i.str()?.to_cow()?.as_bytes())
                .map_err(PyTypeError::new_err),
        };
    }
    if let Ok(f) = obj.cast::<PyFloat>() {
        return Ok(Val::from(f.value()));
    }
    if let Ok(d) = obj.cast::<PyDict>() {
        let mut map = jaq_json::Map::with_capacity_and_hasher(d.len(), Default::default());
        for (k, v) in d.iter() {
            let key = match k.cast::<PyString>() {
                Ok(s) => s.to_cow()?.into_owned(),
                Err(_) => {
                    return Err(PyTypeError::new_err(format!(
                        "a record's keys must be str, not {}",
                        k.get_type().name()?
                    )))
                }
            };
            map.insert(Val::from(key), to_val(&v)?);
        }
        return Ok(Val::obj(map));
    }
    if let Ok(l) = obj.cast::<PyList>() {
        return l.iter().map(|v| to_val(&v)).collect();
    }
    if let Ok(t) = obj.cast::<PyTuple>() {
        return t.iter().map(|v| to_val(&v)).collect();
    }
    if let Ok(b) = obj.cast::<PyBytes>() {
        return Ok(Val::byte_str(b.as_bytes().to_vec()));
    }
    Err(PyTypeError::new_err(format!(
        "a {} cannot be a record value (use dict, list, str, bytes, int, float, bool or None)",
        obj.get_type().name()?
    )))
}
