//! Records' JSON values (`jaq_json::Val`) to Python values and back: objects are dicts,
//! arrays lists, strings str, byte strings bytes, numbers int or float.
//!
//! Object keys repeat across the records of a batch, so a [`Converter`] (one per batch)
//! keeps a table of the keys it has seen: each key becomes one Python string shared by every
//! dict of the batch, and a dict key that is one of those strings (the usual case: a function
//! that changes a record returns the same dict) turns back into its value without reading
//! the string again. The table holds its Python strings for the batch, so their addresses,
//! used to look them up, cannot be reused meanwhile.

use jaq_json::{Num, Val};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};

/// Keys remembered per batch; further keys are converted each time.
const MAX_KEYS: usize = 256;

/// Converts values both ways for one batch.
#[derive(Default)]
pub struct Converter<'py> {
    /// (key bytes, its Python string, its value): searched linearly (a batch has a few
    /// distinct keys; hashing each lookup cost more).
    keys: Vec<(Vec<u8>, Bound<'py, PyString>, Val)>,
}

fn text(b: &[u8]) -> std::borrow::Cow<'_, str> {
    match std::str::from_utf8(b) {
        Ok(s) => std::borrow::Cow::Borrowed(s),
        Err(_) => String::from_utf8_lossy(b),
    }
}

impl<'py> Converter<'py> {
    /// A record value as a Python object.
    pub fn python(&mut self, py: Python<'py>, v: &Val) -> PyResult<Bound<'py, PyAny>> {
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
                    list.append(self.python(py, item)?)?;
                }
                list.into_any()
            }
            Val::Obj(map) => {
                let dict = PyDict::new(py);
                for (k, item) in map.iter() {
                    let key = match k {
                        Val::TStr(s) | Val::BStr(s) => self.key_to_py(py, s, k),
                        other => PyString::new(py, &other.to_string()),
                    };
                    dict.set_item(key, self.python(py, item)?)?;
                }
                dict.into_any()
            }
        })
    }

    fn key_to_py(&mut self, py: Python<'py>, s: &[u8], val: &Val) -> Bound<'py, PyString> {
        if let Some((_, k, _)) = self.keys.iter().find(|(b, _, _)| b.as_slice() == s) {
            return k.clone();
        }
        let k = PyString::new(py, &text(s));
        if self.keys.len() < MAX_KEYS {
            self.keys.push((s.to_vec(), k.clone(), val.clone()));
        }
        k
    }

    fn key_to_val(&mut self, key: &Bound<'py, PyAny>) -> PyResult<Val> {
        let ptr = key.as_ptr();
        if let Some((_, _, v)) = self.keys.iter().find(|(_, k, _)| k.as_ptr() == ptr) {
            return Ok(v.clone());
        }
        let s = key.cast::<PyString>().map_err(|_| {
            let type_name = key
                .get_type()
                .name()
                .map(|n| n.to_string())
                .unwrap_or_default();
            PyTypeError::new_err(format!("a record's keys must be str, not {type_name}"))
        })?;
        let text = s.to_cow()?.into_owned();
        let bytes = text.as_bytes().to_vec();
        let val = Val::from(text);
        if self.keys.len() < MAX_KEYS {
            self.keys.push((bytes, s.clone(), val.clone()));
        }
        Ok(val)
    }

    /// A Python value as a record value; names what cannot be one (a set, an object).
    pub fn value(&mut self, obj: &Bound<'py, PyAny>) -> PyResult<Val> {
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
                let key = self.key_to_val(&k)?;
                map.insert(key, self.value(&v)?);
            }
            return Ok(Val::obj(map));
        }
        if let Ok(l) = obj.cast::<PyList>() {
            return l.iter().map(|v| self.value(&v)).collect();
        }
        if let Ok(t) = obj.cast::<PyTuple>() {
            return t.iter().map(|v| self.value(&v)).collect();
        }
        if let Ok(b) = obj.cast::<PyBytes>() {
            return Ok(Val::byte_str(b.as_bytes().to_vec()));
        }
        Err(PyTypeError::new_err(format!(
            "a {} cannot be a record value (use dict, list, str, bytes, int, float, bool or None)",
            obj.get_type().name()?
        )))
    }
}
