//! `wire._native`: the engine behind the `wire` Python package. Private: the public API is
//! the pure-Python layer in `python/wire`, which turns the JSON these calls return into
//! Python values and documents them.
//!
//! Every call that waits on the engine releases the GIL; errors become the exceptions of
//! `wire.errors`, chosen by the same codes the HTTP API answers with.

mod columnar;
mod connector;
mod convert;
mod error;
mod keyed;
mod transform;

use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::PyBytes;
use wire_core::kv::{Compare, Txn, TxnOp};
use wire_core::pipeline::{DesiredState, PipelineSpec, Registered};
use wire_core::{Consistency, NodeOptions};

use error::{raise, to_py};

/// mimalloc for the engine's allocations (Python's own objects keep Python's allocator): a
/// pipeline allocates and frees many small values per record, and the system allocator
/// halves the throughput of a pipeline hosted here compared with the `wire` binary. Built
/// with `local_dynamic_tls`: with its default initial-exec TLS, a `dlopen`ed module beside
/// librdkafka fails to load ("cannot allocate memory in static TLS block").
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A node hosted in this process (see `wire.Node`).
#[pyclass(module = "wire._native", name = "Node")]
struct NativeNode {
    hosted: wire_core::HostedNode,
    id: u64,
    http_addr: String,
    raft_addr: String,
    url: String,
}

impl NativeNode {
    fn node(&self) -> PyResult<wire_core::Node> {
        self.hosted
            .node()
            .map_err(|_| raise("shutting_down", "the node is stopped"))
    }

    /// Runs `f` on the node's runtime with the GIL released.
    fn block<T: Send, F>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(wire_core::Node) -> F + Send,
    ) -> PyResult<T>
    where
        F: std::future::Future<Output = wire_core::Result<T>> + Send,
    {
        py.detach(move || self.hosted.block(f)).map_err(to_py)
    }
}

fn consistency(c: Option<&str>) -> PyResult<Consistency> {
    match c {
        None => Ok(Consistency::default()),
        Some(c) => c
            .parse()
            .map_err(|e: String| raise("bad_request", &format!("consistency: {e}"))),
    }
}

fn json<T: serde::Serialize>(v: &T) -> PyResult<String> {
    serde_json::to_string(v).map_err(|e| raise("internal", &e.to_string()))
}

fn spec(text: &str) -> PyResult<PipelineSpec> {
    PipelineSpec::parse(text).map_err(|errors| to_py(wire_core::Error::InvalidSpec(errors)))
}

fn compare(key: String, op: &str, value: Option<Vec<u8>>, i: usize) -> PyResult<Compare> {
    Ok(match (op, value) {
        ("equals", Some(value)) => Compare::Equals { key, value },
        ("exists", None) => Compare::Exists { key },
        ("absent", None) => Compare::Absent { key },
        _ => {
            return Err(raise(
                "bad_request",
                &format!("compare[{i}]: '{op}' is equals (with a value), exists or absent"),
            ))
        }
    })
}

type OpTuple = (String, String, Option<Vec<u8>>);

/// A page of a listing: (key, value) pairs and whether more follow.
type KvPage<'py> = (Vec<(String, Bound<'py, PyBytes>)>, bool);

fn ops(list: Vec<OpTuple>, branch: &str) -> PyResult<Vec<TxnOp>> {
    list.into_iter()
        .enumerate()
        .map(|(i, (op, key, value))| match (op.as_str(), value) {
            ("put", Some(value)) => Ok(TxnOp::Put { key, value }),
            ("delete", None) => Ok(TxnOp::Delete { key }),
            _ => Err(raise(
                "bad_request",
                &format!("{branch}[{i}]: '{op}' is put (with a value) or delete"),
            )),
        })
        .collect()
}

#[pymethods]
impl NativeNode {
    /// Starts a node from its options as JSON (the fields of the TOML config file).
    #[new]
    #[pyo3(signature = (options_json, worker_threads = 2))]
    fn new(py: Python<'_>, options_json: &str, worker_threads: usize) -> PyResult<Self> {
        wire_core::cli::init_quiet_logging();
        let options = NodeOptions::from_json(options_json)
            .map_err(|e| to_py(wire_core::Error::Config(vec![e])))?;
        let config = options
            .validate()
            .map_err(|errors| to_py(wire_core::Error::Config(errors)))?;
        let hosted = py
            .detach(|| wire_core::HostedNode::start(config, worker_threads))
            .map_err(to_py)?;
        let node = hosted.node().map_err(to_py)?;
        Ok(NativeNode {
            id: node.id(),
            http_addr: node.http_addr().to_string(),
            raft_addr: node.raft_addr().to_string(),
            url: node.url(),
            hosted,
        })
    }

    #[getter]
    fn id(&self) -> u64 {
        self.id
    }

    #[getter]
    fn http_addr(&self) -> &str {
        &self.http_addr
    }

    #[getter]
    fn raft_addr(&self) -> &str {
        &self.raft_addr
    }

    /// The public API's URL (`https://` when the node speaks TLS).
    #[getter]
    fn url(&self) -> &str {
        &self.url
    }

    #[getter]
    fn stopped(&self) -> bool {
        self.hosted.stopped()
    }

    /// Stops the node: every pipeline job takes a final checkpoint, then Raft and storage
    /// close. Idempotent.
    fn stop(&self, py: Python<'_>) -> PyResult<()> {
        // Pipeline threads may be waiting for the GIL to run a Python transform: release it.
        py.detach(|| self.hosted.shutdown()).map_err(to_py)
    }

    fn status(&self, py: Python<'_>) -> PyResult<String> {
        let status = self.block(py, |n| async move { n.cluster().status().await })?;
        json(&status)
    }

    fn is_ready(&self) -> PyResult<bool> {
        Ok(self.node()?.is_ready())
    }

    fn remove_member(&self, py: Python<'_>, id: u64) -> PyResult<()> {
        self.block(py, move |n| async move { n.cluster().remove(id).await })
    }

    fn drain(&self, py: Python<'_>, id: u64, draining: bool) -> PyResult<bool> {
        self.block(
            py,
            move |n| async move { n.cluster().drain(id, draining).await },
        )
    }

    #[pyo3(signature = (key, consistency = None))]
    fn kv_get<'py>(
        &self,
        py: Python<'py>,
        key: String,
        consistency: Option<&str>,
    ) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let c = self::consistency(consistency)?;
        let value = self.block(py, move |n| async move { n.kv().get(&key, c).await })?;
        Ok(value.map(|v| PyBytes::new(py, &v)))
    }

    /// Returns (index, existed).
    fn kv_put(&self, py: Python<'_>, key: String, value: Vec<u8>) -> PyResult<(u64, bool)> {
        let w = self.block(py, move |n| async move { n.kv().put(&key, value).await })?;
        Ok((w.index, w.existed))
    }

    /// Returns (index, deleted).
    fn kv_delete(&self, py: Python<'_>, key: String) -> PyResult<(u64, bool)> {
        let d = self.block(py, move |n| async move { n.kv().delete(&key).await })?;
        Ok((d.index, d.deleted))
    }

    /// Returns (items, more): up to `limit` (key, value) pairs after `after` under `prefix`.
    #[pyo3(signature = (prefix, after = None, limit = 100, consistency = None))]
    fn kv_list<'py>(
        &self,
        py: Python<'py>,
        prefix: String,
        after: Option<String>,
        limit: usize,
        consistency: Option<&str>,
    ) -> PyResult<KvPage<'py>> {
        if limit == 0 || limit > wire_core::kv::MAX_LIST_LIMIT {
            return Err(raise(
                "bad_request",
                &format!(
                    "limit: must be between 1 and {}",
                    wire_core::kv::MAX_LIST_LIMIT
                ),
            ));
        }
        let c = self::consistency(consistency)?;
        let page = self.block(py, move |n| async move {
            n.kv().list(&prefix, after.as_deref(), limit, c).await
        })?;
        let items = page
            .items
            .into_iter()
            .map(|(k, v)| (k, PyBytes::new(py, &v)))
            .collect();
        Ok((items, page.more))
    }

    /// An atomic transaction. `compare` holds (key, "equals"|"exists"|"absent", value);
    /// `success` and `failure` hold ("put"|"delete", key, value). Returns (succeeded, index).
    fn kv_txn(
        &self,
        py: Python<'_>,
        compare: Vec<OpTuple>,
        success: Vec<OpTuple>,
        failure: Vec<OpTuple>,
    ) -> PyResult<(bool, u64)> {
        let txn = Txn {
            compare: compare
                .into_iter()
                .enumerate()
                .map(|(i, (key, op, value))| self::compare(key, &op, value, i))
                .collect::<PyResult<_>>()?,
            success: ops(success, "success")?,
            failure: ops(failure, "failure")?,
        };
        let t = self.block(py, move |n| async move { n.kv().txn(txn).await })?;
        Ok((t.succeeded, t.index))
    }

    /// Checks a spec (JSON or YAML) against this node; returns nothing or raises.
    fn pipeline_validate(&self, text: &str) -> PyResult<()> {
        let spec = spec(text)?;
        self.node()?
            .pipelines()
            .validate_spec(&spec)
            .map_err(to_py)?;
        Ok(())
    }

    /// Creates a pipeline, or with `upsert` stores a new version of it (creating it when
    /// missing, as `PUT /pipelines/{name}` does); returns the JSON the HTTP API answers with.
    #[pyo3(signature = (text, upsert = false))]
    fn pipeline_put(&self, py: Python<'_>, text: &str, upsert: bool) -> PyResult<String> {
        let spec = spec(text)?;
        let written = self.block(py, move |n| async move {
            if upsert {
                n.pipelines().update(spec, true).await
            } else {
                n.pipelines().create(spec).await
            }
        })?;
        json(&written)
    }

    fn pipeline_set_running(
        &self,
        py: Python<'_>,
        name: String,
        running: bool,
    ) -> PyResult<String> {
        let desired = if running {
            DesiredState::Running
        } else {
            DesiredState::Paused
        };
        let written = self.block(py, move |n| async move {
            n.pipelines().set_state(&name, desired).await
        })?;
        json(&written)
    }

    fn pipeline_delete(&self, py: Python<'_>, name: String) -> PyResult<()> {
        self.block(
            py,
            move |n| async move { n.pipelines().delete(&name).await },
        )
    }

    /// The status JSON of `GET /pipelines/{name}`, or None.
    #[pyo3(signature = (name, consistency = None))]
    fn pipeline_status(
        &self,
        py: Python<'_>,
        name: String,
        consistency: Option<&str>,
    ) -> PyResult<Option<String>> {
        let c = self::consistency(consistency)?;
        let status = self.block(
            py,
            move |n| async move { n.pipelines().status(&name, c).await },
        )?;
        status.as_ref().map(json).transpose()
    }

    /// The JSON list of pipeline records.
    #[pyo3(signature = (consistency = None))]
    fn pipeline_list(&self, py: Python<'_>, consistency: Option<&str>) -> PyResult<String> {
        let c = self::consistency(consistency)?;
        let list = self.block(py, move |n| async move { n.pipelines().list(c).await })?;
        json(&list)
    }

    /// Registers `func` as the transform `name`. `kind` is map, filter, flat_map or key_by;
    /// with `batch`, `func` takes the list of a batch's values and returns a list. `kind`
    /// fold or stateful_map registers a keyed function (for a reduce step).
    #[pyo3(signature = (name, kind, func, batch = false))]
    fn register_transform(
        &self,
        name: &str,
        kind: &str,
        func: Py<PyAny>,
        batch: bool,
    ) -> PyResult<()> {
        if matches!(kind, "map_batches" | "filter_batches") {
            let columnar = columnar::PyColumnar::new(name, func)?;
            return self
                .node()?
                .pipelines()
                .register_transform(name, Arc::new(columnar))
                .map_err(to_py);
        }
        if matches!(kind, "fold" | "stateful_map") {
            let keyed = keyed::PyKeyed::new(name, kind, func)?;
            return self
                .node()?
                .pipelines()
                .register_keyed(name, Arc::new(keyed))
                .map_err(to_py);
        }
        let transform = transform::PyTransform::new(name, kind, func, batch)?;
        self.node()?
            .pipelines()
            .register_transform(name, Arc::new(transform))
            .map_err(to_py)
    }
}

impl Drop for NativeNode {
    fn drop(&mut self) {
        if !self.hosted.stopped() {
            // Dropped without stop(): shut down without holding the GIL, which a pipeline
            // thread running a Python transform may be waiting for.
            Python::attach(|py| py.detach(|| self.hosted.shutdown()).ok());
        }
    }
}

/// A spec (JSON or YAML) as the engine stores it: JSON with every default filled in, so two
/// specs can be compared. Raises `InvalidSpecError` for any problem a node would find, except
/// that every transform type not built in is taken to be registered.
#[pyfunction]
fn normalize_spec(text: &str) -> PyResult<String> {
    let spec = spec(text)?;
    // A name a reduce step uses as its function is taken to be a keyed function.
    let keyed: std::collections::HashSet<String> = spec
        .transforms
        .iter()
        .filter(|t| t.kind == "reduce")
        .filter_map(|t| t.config.get("function")?.as_str().map(str::to_string))
        .collect();
    wire_core::pipeline::validate(&spec, &|name| {
        Some(if keyed.contains(name) {
            Registered::Keyed
        } else {
            Registered::Transform
        })
    })
    .map_err(|errors| to_py(wire_core::Error::InvalidSpec(errors)))?;
    json(&spec)
}

/// Registers `obj` (read(split, position), optionally splits()) as the source `name` in this
/// process, for `{"type": "registered", "config": {"name": name}}`.
#[pyfunction]
fn register_source(name: &str, obj: Py<PyAny>) -> PyResult<()> {
    wire_core::ops::pipelines::PipelineOps::check_transform_name(name).map_err(to_py)?;
    let owned = name.to_string();
    let shared = connector::Shared::new(obj);
    wire_core::connectors::registered::register_source(
        name,
        Arc::new(move |ctx| connector::open_source(&owned, &shared, ctx)),
    );
    Ok(())
}

/// Registers `obj` (write(values), optionally flush()) as the sink `name` in this process.
#[pyfunction]
fn register_sink(name: &str, obj: Py<PyAny>) -> PyResult<()> {
    wire_core::ops::pipelines::PipelineOps::check_transform_name(name).map_err(to_py)?;
    let owned = name.to_string();
    let shared = connector::Shared::new(obj);
    wire_core::connectors::registered::register_sink(
        name,
        Arc::new(move |ctx| connector::open_sink(&owned, &shared, ctx)),
    );
    Ok(())
}

/// The engine's version.
#[pyfunction]
fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

/// A duration such as `100ms`, `2s`, `5m` or `1h` in milliseconds, as a spec reads it.
#[pyfunction]
fn duration_ms(text: &str) -> PyResult<u64> {
    let d = wire_core::pipeline::spec::parse_duration(text)
        .map_err(pyo3::exceptions::PyValueError::new_err)?;
    Ok(d.as_millis() as u64)
}

/// The argon2id hash of a password (a PHC string), for `password_hash` in a users file.
#[pyfunction]
fn hash_password(py: Python<'_>, password: &str) -> PyResult<String> {
    let password = password.to_string();
    py.detach(move || wire_core::auth::hash_password(&password))
        .map_err(pyo3::exceptions::PyRuntimeError::new_err)
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<NativeNode>()?;
    m.add_function(wrap_pyfunction!(version, m)?)?;
    m.add_function(wrap_pyfunction!(hash_password, m)?)?;
    m.add_function(wrap_pyfunction!(duration_ms, m)?)?;
    m.add_function(wrap_pyfunction!(normalize_spec, m)?)?;
    m.add_function(wrap_pyfunction!(register_source, m)?)?;
    m.add_function(wrap_pyfunction!(register_sink, m)?)?;
    Ok(())
}
