//! Python functions of whole columnar batches (`map_batches`, `filter_batches`): the records'
//! JSON values become an Arrow record batch in Rust (arrow-json, with the schema inferred
//! from the step's first batch), which goes to Python through the Arrow C data interface
//! (two PyCapsules, no copy); `wire._columnar` turns it into a pyarrow, polars or pandas
//! frame, calls the function, and hands back a record batch (map) or a boolean mask
//! (filter) the same way, which becomes records again here.
//!
//! The rule for records that do not fit: a record must fit the schema of the step's first
//! batch (no field the schema lacks, each field of its type or null); one that does not goes
//! to the dead-letter sink with the decoder's reason. A function that raises, or returns a
//! different number of rows than it got, sends its batch to the dead-letter sink.

use std::sync::{Arc, Mutex};

use arrow_array::{Array, BooleanArray, RecordBatch, StructArray};
use arrow_data::ffi::FFI_ArrowArray;
use arrow_schema::ffi::FFI_ArrowSchema;
use arrow_schema::SchemaRef;
use pyo3::prelude::*;
use pyo3::types::{PyCapsule, PyCapsuleMethods};
use wire_core::pipeline::transform::{Batching, Record, Transform};

use crate::transform::traceback;

const SCHEMA: &std::ffi::CStr = c"arrow_schema";
const ARRAY: &std::ffi::CStr = c"arrow_array";

pub struct PyColumnar {
    name: String,
    /// `wire._columnar.Stages`: (schema, array) capsules in; out, a boolean mask (every stage
    /// a filter) or a record batch with the input row of each output row in `__wire_row`.
    func: Py<PyAny>,
    /// Most rows per call (the step's `batch_size`), if capped.
    max_rows: Option<usize>,
    /// How long the engine may hold rows to gather `max_rows` (the step's `max_wait`).
    max_wait: Option<std::time::Duration>,
    schema: Mutex<Option<SchemaRef>>,
    /// Whether the schema was given (else inferred from the first batch).
    given: bool,
}

/// A schema from Python: an object with `__arrow_c_schema__` (a `pyarrow.Schema`), which must
/// be a struct of fields.
fn given_schema(schema: &Bound<'_, PyAny>) -> PyResult<SchemaRef> {
    let bad = |why: String| pyo3::exceptions::PyValueError::new_err(format!("schema: {why}"));
    let capsule = schema
        .call_method0("__arrow_c_schema__")
        .map_err(|_| bad("a pyarrow.Schema (or another object with __arrow_c_schema__)".into()))?;
    let capsule = capsule
        .cast_into::<PyCapsule>()
        .map_err(|e| bad(e.to_string()))?;
    let ptr = capsule.pointer_checked(Some(SCHEMA))?;
    // SAFETY: an `arrow_schema` capsule points to an ArrowSchema that lives as long as the
    // capsule, which is held while it is read here; it is only borrowed.
    let ffi = unsafe { &*ptr.as_ptr().cast::<FFI_ArrowSchema>() };
    let schema = arrow_schema::Schema::try_from(ffi).map_err(|e| bad(e.to_string()))?;
    if schema.fields().is_empty() {
        return Err(bad("it has no fields".into()));
    }
    Ok(Arc::new(schema))
}

/// The column of a returned batch that says which input row each output row comes from.
const ROW: &str = "__wire_row";

impl PyColumnar {
    /// `func` is a `wire._columnar.Stages`: its `batch_size`, `max_wait` (seconds) and
    /// `schema` (anything with `__arrow_c_schema__`, or None to infer it) are read here.
    pub fn new(name: &str, func: Py<PyAny>) -> PyResult<PyColumnar> {
        let (max_rows, max_wait, schema) = Python::attach(|py| -> PyResult<_> {
            let stages = func.bind(py);
            let schema = match stages.getattr("schema") {
                Ok(s) if !s.is_none() => Some(given_schema(&s)?),
                _ => None,
            };
            let rows = stages
                .getattr("batch_size")
                .and_then(|b| b.extract::<Option<usize>>())
                .ok()
                .flatten()
                .filter(|n| *n > 0);
            let wait = stages
                .getattr("max_wait")
                .and_then(|w| w.extract::<Option<f64>>())
                .ok()
                .flatten()
                .and_then(|s| std::time::Duration::try_from_secs_f64(s).ok());
            Ok((rows, wait, schema))
        })?;
        Ok(PyColumnar {
            name: name.to_string(),
            func,
            max_rows,
            max_wait,
            given: schema.is_some(),
            schema: Mutex::new(schema),
        })
    }

    /// The step's schema: inferred from `lines` the first time.
    fn schema(&self, lines: &[std::borrow::Cow<'_, [u8]>]) -> Result<SchemaRef, String> {
        let mut known = self.schema.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = known.as_ref() {
            return Ok(s.clone());
        }
        let values = lines
            .iter()
            .filter_map(|l| serde_json::from_slice::<serde_json::Value>(l).ok())
            .map(Ok::<_, arrow_schema::ArrowError>);
        let schema = arrow_json::reader::infer_json_schema_from_iterator(values)
            .map_err(|e| format!("inferring the schema from the first batch: {e}"))?;
        let schema = Arc::new(schema);
        *known = Some(schema.clone());
        Ok(schema)
    }

    /// The lines as one record batch of `schema`.
    fn decode(schema: &SchemaRef, lines: &[&[u8]]) -> Result<RecordBatch, String> {
        let mut decoder = arrow_json::ReaderBuilder::new(schema.clone())
            .with_strict_mode(true)
            .with_batch_size(lines.len().max(1))
            .build_decoder()
            .map_err(|e| e.to_string())?;
        // One call over the lines joined: the decoder's per-call setup paid once.
        let mut text = Vec::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
        for line in lines {
            text.extend_from_slice(line);
            text.push(b'\n');
        }
        let mut at = 0;
        while at < text.len() {
            match decoder.decode(&text[at..]).map_err(|e| e.to_string())? {
                0 => break,
                n => at += n,
            }
        }
        match decoder.flush().map_err(|e| e.to_string())? {
            Some(batch) => Ok(batch),
            None => Ok(RecordBatch::new_empty(schema.clone())),
        }
    }

    /// Calls the function on `batch`; its answer as Arrow data.
    fn call(&self, py: Python<'_>, batch: RecordBatch) -> PyResult<arrow_data::ArrayData> {
        let data = StructArray::from(batch).into_data();
        let array = FFI_ArrowArray::new(&data);
        let schema = FFI_ArrowSchema::try_from(data.data_type())
            .map_err(|e| pyo3::exceptions::PyValueError::new_err(e.to_string()))?;
        let schema = PyCapsule::new_with_value(py, schema, SCHEMA)?;
        let array = PyCapsule::new_with_value(py, array, ARRAY)?;
        let result = self.func.bind(py).call1((schema, array))?;
        let (schema, array): (Bound<'_, PyCapsule>, Bound<'_, PyCapsule>) =
            result.call_method0("__arrow_c_array__")?.extract()?;
        let schema_ptr = schema.pointer_checked(Some(SCHEMA))?;
        let array_ptr = array.pointer_checked(Some(ARRAY))?;
        // SAFETY: the capsules follow the Arrow PyCapsule interface: they point to an
        // ArrowSchema and an ArrowArray; the array is moved out (its release set to null in
        // the capsule, which then frees nothing), the schema only borrowed while it lives.
        unsafe {
            let array = FFI_ArrowArray::from_raw(array_ptr.as_ptr().cast());
            let schema = &*schema_ptr.as_ptr().cast::<FFI_ArrowSchema>();
            arrow_array::ffi::from_ffi(array, schema)
                .map_err(|e| pyo3::exceptions::PyValueError::new_err(e.to_string()))
        }
    }

    /// Runs the function on `rows` (the records of `batch`, decoded).
    fn run(
        &self,
        rows: RecordBatch,
        batch: Vec<Record>,
        out: &mut Vec<Record>,
        rejected: &mut Vec<(Record, String)>,
    ) {
        let n = batch.len();
        let answer = Python::attach(|py| {
            self.call(py, rows)
                .map_err(|e| traceback(py, "python batch function", &self.name, &e))
        });
        let result = answer.and_then(|data| self.answer(data, n));
        match result {
            Ok(Answer::Keep(keep)) => out.extend(
                batch
                    .into_iter()
                    .zip(keep)
                    .filter_map(|(r, k)| k.then_some(r)),
            ),
            Ok(Answer::Rows(rows)) => {
                let mut inputs: Vec<Option<Record>> = batch.into_iter().map(Some).collect();
                for (i, text) in rows {
                    if let Some(r) = inputs.get_mut(i).and_then(Option::take) {
                        // Handed on as text: parsed only if a later step or sink reads values.
                        out.push(Record {
                            value: jaq_json::Val::Null,
                            raw: Some(text),
                            ..r
                        });
                    }
                }
            }
            Err(why) => rejected.extend(batch.into_iter().map(|r| (r, why.clone()))),
        }
    }

    /// What the function's answer keeps of `n` inputs.
    fn answer(&self, data: arrow_data::ArrayData, n: usize) -> Result<Answer, String> {
        if data.data_type() == &arrow_schema::DataType::Boolean {
            if data.len() != n {
                return Err(format!(
                    "python batch function '{}' returned a mask of {} for {n} rows",
                    self.name,
                    data.len()
                ));
            }
            let mask = BooleanArray::from(data);
            return Ok(Answer::Keep(
                (0..n).map(|i| mask.is_valid(i) && mask.value(i)).collect(),
            ));
        }
        let mut rows = RecordBatch::from(StructArray::from(data));
        let from: Vec<usize> = match rows.schema().index_of(ROW) {
            Ok(k) => {
                let column = rows.remove_column(k);
                let ids = column
                    .as_any()
                    .downcast_ref::<arrow_array::Int64Array>()
                    .ok_or_else(|| format!("{ROW} is not an int64 column"))?;
                ids.values().iter().map(|i| *i as usize).collect()
            }
            Err(_) if rows.num_rows() == n => (0..n).collect(),
            Err(_) => {
                return Err(format!(
                    "python batch function '{}' returned {} rows for {n}",
                    self.name,
                    rows.num_rows()
                ))
            }
        };
        let mut text = Vec::new();
        {
            let mut writer = arrow_json::WriterBuilder::new()
                .with_explicit_nulls(true)
                .build::<_, arrow_json::writer::LineDelimited>(&mut text);
            writer.write(&rows).map_err(|e| e.to_string())?;
            writer.finish().map_err(|e| e.to_string())?;
        }
        let text = bytes::Bytes::from(text);
        let values: Vec<bytes::Bytes> = text
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| text.slice_ref(l))
            .collect();
        if values.len() != from.len() {
            return Err(format!(
                "the batch came back as {} records for {} rows",
                values.len(),
                from.len()
            ));
        }
        Ok(Answer::Rows(from.into_iter().zip(values).collect()))
    }
}

enum Answer {
    Keep(Vec<bool>),
    /// (input row, its new value as JSON text) for each output row.
    Rows(Vec<(usize, bytes::Bytes)>),
}

impl Transform for PyColumnar {
    fn takes_raw(&self) -> bool {
        true
    }

    fn batching(&self) -> Option<Batching> {
        Some(Batching {
            size: self.max_rows?,
            max_wait: self.max_wait?,
        })
    }

    fn apply(
        &self,
        batch: Vec<Record>,
        out: &mut Vec<Record>,
        rejected: &mut Vec<(Record, String)>,
    ) {
        if batch.is_empty() {
            return;
        }
        if let Some(max) = self.max_rows.filter(|m| batch.len() > *m) {
            let mut rest = batch;
            while !rest.is_empty() {
                let tail = rest.split_off(max.min(rest.len()));
                self.apply(rest, out, rejected);
                rest = tail;
            }
            return;
        }
        // Records still in JSON text go to the decoder as they are.
        let lines: Vec<std::borrow::Cow<'_, [u8]>> = batch.iter().map(Record::json).collect();
        let schema = match self.schema(&lines) {
            Ok(s) => s,
            Err(why) => {
                drop(lines);
                rejected.extend(batch.into_iter().map(|r| (r, why.clone())));
                return;
            }
        };
        let all: Vec<&[u8]> = lines.iter().map(|l| l.as_ref()).collect();
        if let Ok(rows) = Self::decode(&schema, &all) {
            drop(all);
            drop(lines);
            return self.run(rows, batch, out, rejected);
        }
        // Some records do not fit: find them one by one, run the rest.
        let fits: Vec<Result<(), String>> = lines
            .iter()
            .map(|l| Self::decode(&schema, &[l.as_ref()]).map(drop))
            .collect();
        let fit_text: Vec<Vec<u8>> = lines
            .iter()
            .zip(&fits)
            .filter(|(_, f)| f.is_ok())
            .map(|(l, _)| l.to_vec())
            .collect();
        drop(all);
        drop(lines);
        let mut fit = Vec::new();
        for (record, outcome) in batch.into_iter().zip(fits) {
            match outcome {
                Ok(()) => fit.push(record),
                Err(e) => rejected.push((
                    record,
                    format!(
                        "python batch function '{}': the record does not fit the schema {} ({schema}): {e}",
                        self.name,
                        if self.given { "given to the step" } else { "of the step's first batch" },
                    ),
                )),
            }
        }
        if fit.is_empty() {
            return;
        }
        let fit_lines: Vec<&[u8]> = fit_text.iter().map(Vec::as_slice).collect();
        match Self::decode(&schema, &fit_lines) {
            Ok(rows) => self.run(rows, fit, out, rejected),
            Err(e) => rejected.extend(fit.into_iter().map(|r| (r, format!("decoding: {e}")))),
        }
    }
}
