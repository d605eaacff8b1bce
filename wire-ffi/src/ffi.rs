//! Every `extern "C"` function of libwire, and all of its raw-pointer code: arguments are
//! checked and turned into Rust values here, the work is done by safe code (`host.rs`), and
//! results are written through out-parameters only on success. Each function catches panics,
//! so none crosses into C.

use std::ffi::{c_char, c_void, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use wire_core::pipeline::reduce::{KeyStates, KeyedFunction, PerKey, Update};
use wire_core::pipeline::transform::{Record, Transform};

use crate::host::{self, Hosted};
use crate::status::{self, wire_status, Failure};

/// A node hosted by this process. Opaque: a handle is checked on every call, so a NULL,
/// freed or made-up handle gives `WIRE_ERR_INVALID_HANDLE`.
#[allow(non_camel_case_types)]
pub struct wire_node {
    _private: [u8; 0],
}

/// The input of a transform call: its records' values as JSON, borrowed for the call.
#[allow(non_camel_case_types)]
pub struct wire_batch {
    /// Every value's JSON, each followed by a NUL.
    text: Vec<u8>,
    /// (start, length without the NUL) of each value in `text`.
    spans: Vec<(usize, usize)>,
    keys: Vec<Option<Vec<u8>>>,
}

/// Where a transform call puts its output records and rejections.
#[allow(non_camel_case_types)]
pub struct wire_batch_builder {
    inputs: usize,
    /// (input, value JSON, key) in emit order.
    emitted: Vec<(usize, Vec<u8>, Option<Vec<u8>>)>,
    rejected: Vec<(usize, String)>,
    failure: Option<String>,
}

/// A C transform: called with a batch of records and a builder for its output.
///
/// It runs on the pipeline partition's own thread, never on the node's async runtime, and
/// may block (only its partition waits). Several partitions call it at once from their
/// threads, so `user_data` must be safe to share between threads. During the call, use only
/// the `wire_batch_*` and `wire_batch_builder_*` functions with the two pointers, which are
/// valid only until it returns. Emit records with `wire_batch_builder_emit` (none: the
/// input is dropped, as a filter does), send one to the dead-letter sink with
/// `wire_batch_builder_reject`. Returning anything but `WIRE_OK` rejects the whole batch
/// with the message given to `wire_batch_builder_fail`.
#[allow(non_camel_case_types)]
pub type wire_transform_fn = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        input: *const wire_batch,
        output: *mut wire_batch_builder,
    ) -> wire_status,
>;

/// What a keyed function call decided: the key's new state and the values to emit.
#[allow(non_camel_case_types)]
pub struct wire_keyed_result {
    /// `None`: the state stays; `Some(None)`: forget the key; `Some(Some(json))`: set it.
    state: Option<Option<Vec<u8>>>,
    emitted: Vec<Vec<u8>>,
    failure: Option<String>,
}

/// A C keyed function (state per key, for a `reduce` step's `function`): called once per
/// record, a key's records in order, with the key, the key's state as JSON (`state` NULL
/// and `state_len` 0 when the key has none: the step's `init` is given when it has one) and
/// the record's value as JSON. Both JSON texts are NUL-terminated and valid only during the
/// call.
///
/// Set the key's new state with `wire_keyed_result_set_state` (not calling it keeps the
/// state; NULL forgets the key) and emit records with `wire_keyed_result_emit`, using only
/// those functions with `result`, which is valid only until the call returns. Returning
/// anything but `WIRE_OK` sends the record to the dead-letter sink with the message given to
/// `wire_keyed_result_fail`, and the key's state stays as it was. It runs on the partition's
/// own thread, like a transform; several partitions call it at once, so `user_data` must be
/// safe to share between threads.
#[allow(non_camel_case_types)]
pub type wire_keyed_fn = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        key: *const u8,
        key_len: usize,
        state: *const c_char,
        state_len: usize,
        value: *const c_char,
        value_len: usize,
        result: *mut wire_keyed_result,
    ) -> wire_status,
>;

/// Frees a transform's `user_data` when the node no longer needs it.
#[allow(non_camel_case_types)]
pub type wire_free_fn = Option<unsafe extern "C" fn(user_data: *mut c_void)>;

/// libwire's major version.
pub const WIRE_VERSION_MAJOR: u32 = 0;
/// libwire's minor version.
pub const WIRE_VERSION_MINOR: u32 = 1;
/// libwire's patch version.
pub const WIRE_VERSION_PATCH: u32 = 0;

const VERSION: &CStr =
    match CStr::from_bytes_with_nul(concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes()) {
        Ok(v) => v,
        Err(_) => c"unknown",
    };

fn null(what: &str) -> Failure {
    Failure::new(
        wire_status::WIRE_ERR_NULL_ARGUMENT,
        format!("{what} is NULL"),
    )
}

/// Runs a call: clears the thread's last error, catches panics, records a failure.
fn call(f: impl FnOnce() -> Result<(), Failure>) -> wire_status {
    status::clear();
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => wire_status::WIRE_OK,
        Ok(Err(failure)) => status::fail(failure),
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            status::fail(Failure::new(
                wire_status::WIRE_ERR_PANIC,
                format!("libwire panicked (a bug; please report it): {what}"),
            ))
        }
    }
}

/// Borrowed NUL-terminated UTF-8 text.
///
/// # Safety
/// `ptr` is NULL or points to a NUL-terminated string valid for the call.
unsafe fn text<'a>(ptr: *const c_char, what: &str) -> Result<&'a str, Failure> {
    if ptr.is_null() {
        return Err(null(what));
    }
    CStr::from_ptr(ptr).to_str().map_err(|e| {
        Failure::new(
            wire_status::WIRE_ERR_INVALID_ARGUMENT,
            format!("{what} is not UTF-8: {e}"),
        )
    })
}

/// Like [`text`], with NULL meaning none.
///
/// # Safety
/// As [`text`].
unsafe fn optional_text<'a>(ptr: *const c_char, what: &str) -> Result<Option<&'a str>, Failure> {
    if ptr.is_null() {
        Ok(None)
    } else {
        text(ptr, what).map(Some)
    }
}

/// Borrowed bytes; NULL is allowed with length 0.
///
/// # Safety
/// `ptr` is NULL or points to `len` readable bytes valid for the call.
unsafe fn bytes<'a>(ptr: *const u8, len: usize, what: &str) -> Result<&'a [u8], Failure> {
    match (ptr.is_null(), len) {
        (true, 0) => Ok(&[]),
        (true, _) => Err(null(what)),
        (false, _) => Ok(std::slice::from_raw_parts(ptr, len)),
    }
}

/// Fails on a NULL out-parameter (checked before any work, so nothing happens).
fn out<T>(ptr: *mut T, what: &str) -> Result<(), Failure> {
    if ptr.is_null() {
        Err(null(what))
    } else {
        Ok(())
    }
}

/// Writes an out-parameter checked by [`out`].
///
/// # Safety
/// `ptr` is non-NULL, aligned and writable.
unsafe fn write<T>(ptr: *mut T, value: T) {
    ptr.write(value);
}

fn hosted(handle: *const wire_node) -> Result<Arc<Hosted>, Failure> {
    host::get(handle as usize as u64)
}

fn c_string(s: String) -> *mut c_char {
    // JSON and messages hold no NUL; escape one if a value ever does.
    CString::new(s.replace('\0', "\\u0000"))
        .unwrap_or_default()
        .into_raw()
}

/// libwire's version, such as "0.1.0". Static: do not free.
#[no_mangle]
pub extern "C" fn wire_version() -> *const c_char {
    VERSION.as_ptr()
}

/// The message of the last call on this thread that failed, or NULL if the last call
/// succeeded. Owned by libwire and valid until this thread's next call into libwire.
#[no_mangle]
pub extern "C" fn wire_last_error() -> *const c_char {
    // The message lives in a thread-local until this thread's next call, as documented.
    status::with_last_error(|m| m.map_or(std::ptr::null(), |m| m.as_ptr()))
}

/// Starts a node from `config`: JSON or TOML text with the keys of `wire node --config`
/// (`node_id`, `http_addr`, `raft_addr`, `data_dir`, `bootstrap`, `join`, ...; for a
/// cluster on a network `tls_cert`, `tls_key`, `tls_ca`, `users_file` or `users`, and
/// `cluster_secret`). Returns once it serves (and, with `join`, once it is a member). On
/// success `*out_node` is a handle to free with `wire_node_free`.
///
/// # Safety
/// `config` is NULL or a NUL-terminated string; `out_node` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn wire_node_start(
    config: *const c_char,
    out_node: *mut *mut wire_node,
) -> wire_status {
    call(|| {
        out(out_node, "out_node")?;
        let config = text(config, "config")?;
        let id = host::insert(Hosted::start(config)?);
        write(out_node, id as usize as *mut wire_node);
        Ok(())
    })
}

/// The node's status as JSON (what `GET /status` answers). Free `*out_json` with
/// `wire_string_free`.
///
/// # Safety
/// `out_json` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn wire_node_status(
    node: *const wire_node,
    out_json: *mut *mut c_char,
) -> wire_status {
    call(|| {
        out(out_json, "out_json")?;
        let json = hosted(node)?.status()?;
        write(out_json, c_string(json));
        Ok(())
    })
}

/// Stops the node: pipeline jobs take a final checkpoint, then Raft and storage close. The
/// handle stays valid (calls on it give `WIRE_ERR_SHUTDOWN`) until `wire_node_free`.
/// Stopping a stopped node succeeds.
#[no_mangle]
pub extern "C" fn wire_node_shutdown(node: *mut wire_node) -> wire_status {
    call(|| hosted(node)?.shutdown())
}

/// Frees a handle, shutting the node down first if it runs. Freeing NULL, or a handle freed
/// before, gives `WIRE_ERR_INVALID_HANDLE` and does nothing else.
#[no_mangle]
pub extern "C" fn wire_node_free(node: *mut wire_node) -> wire_status {
    call(|| {
        let hosted = host::remove(node as usize as u64)?;
        hosted.shutdown()
    })
}

/// Registers `transform` under `name` on this node, usable as `{"type": name}` in any spec
/// the node runs (or `{"type": "key_by", "config": {"transform": name}}` when it emits keyed
/// records). `free_user_data` (may be NULL) is called once with `user_data` when the node
/// drops the transform: replaced by another of that name, or the node freed. On failure (a
/// bad or built-in name, a stopped node), `user_data` stays the caller's.
///
/// # Safety
/// `name` is NULL or a NUL-terminated string; `transform` and `free_user_data` follow
/// their typedefs' contracts for as long as the node holds them.
#[no_mangle]
pub unsafe extern "C" fn wire_node_register_transform(
    node: *const wire_node,
    name: *const c_char,
    transform: wire_transform_fn,
    user_data: *mut c_void,
    free_user_data: wire_free_fn,
) -> wire_status {
    call(|| {
        let name = text(name, "name")?;
        let Some(function) = transform else {
            return Err(null("transform"));
        };
        let engine = hosted(node)?.node()?;
        // Checked first: a refused registration leaves `user_data` the caller's.
        wire_core::ops::pipelines::PipelineOps::check_transform_name(name)?;
        let t = CTransform {
            name: name.to_string(),
            function,
            data: Owned {
                user_data: UserData(user_data),
                free: free_user_data,
            },
        };
        Ok(engine.pipelines().register_transform(name, Arc::new(t))?)
    })
}

/// Registers `function` as the keyed function `name` on this node, usable after a `key_by`
/// as `{"type": "reduce", "config": {"function": name, "init": <JSON, optional>}}`. Its
/// state per key is checkpointed with the sources, so it survives a restart or a failover.
/// `free_user_data` is as for `wire_node_register_transform`.
///
/// # Safety
/// `name` is NULL or a NUL-terminated string; `function` and `free_user_data` follow their
/// typedefs' contracts for as long as the node holds them.
#[no_mangle]
pub unsafe extern "C" fn wire_node_register_keyed(
    node: *const wire_node,
    name: *const c_char,
    function: wire_keyed_fn,
    user_data: *mut c_void,
    free_user_data: wire_free_fn,
) -> wire_status {
    call(|| {
        let name = text(name, "name")?;
        let Some(function) = function else {
            return Err(null("function"));
        };
        let engine = hosted(node)?.node()?;
        wire_core::ops::pipelines::PipelineOps::check_transform_name(name)?;
        let keyed = CKeyed {
            name: name.to_string(),
            function,
            data: Owned {
                user_data: UserData(user_data),
                free: free_user_data,
            },
        };
        Ok(engine.pipelines().register_keyed(name, Arc::new(keyed))?)
    })
}

/// Sets the key's new state to `len` bytes of JSON at `json`; `json` NULL forgets the key
/// (its next record starts from the step's `init`). Invalid JSON sends the record to the
/// dead-letter sink with the parse error, the state unchanged.
///
/// # Safety
/// `result` is NULL or the running call's result; `json` NULL or `len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn wire_keyed_result_set_state(
    result: *mut wire_keyed_result,
    json: *const c_char,
    len: usize,
) -> wire_status {
    call(|| {
        let r = result.as_mut().ok_or_else(|| null("result"))?;
        r.state = Some(if json.is_null() {
            None
        } else {
            Some(bytes(json as *const u8, len, "json")?.to_vec())
        });
        Ok(())
    })
}

/// Emits a record made from the input (keeping its key, time and origin) with `len` bytes of
/// JSON at `json` as its value. Call it as many times as there are outputs.
///
/// # Safety
/// `result` is NULL or the running call's result; `json` NULL or `len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn wire_keyed_result_emit(
    result: *mut wire_keyed_result,
    json: *const c_char,
    len: usize,
) -> wire_status {
    call(|| {
        let r = result.as_mut().ok_or_else(|| null("result"))?;
        r.emitted
            .push(bytes(json as *const u8, len, "json")?.to_vec());
        Ok(())
    })
}

/// Says why the call is about to return an error status (the dead letter's reason).
///
/// # Safety
/// `result` is NULL or the running call's result; `message` NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn wire_keyed_result_fail(
    result: *mut wire_keyed_result,
    message: *const c_char,
) -> wire_status {
    call(|| {
        let r = result.as_mut().ok_or_else(|| null("result"))?;
        r.failure = Some(text(message, "message")?.to_string());
        Ok(())
    })
}

/// Sets `key` to `len` bytes at `value` (NULL with `len` 0 is the empty value).
///
/// # Safety
/// `key` is NULL or a NUL-terminated string; `value` is NULL or `len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn wire_kv_put(
    node: *const wire_node,
    key: *const c_char,
    value: *const u8,
    len: usize,
) -> wire_status {
    call(|| {
        let key = text(key, "key")?;
        let value = bytes(value, len, "value")?;
        hosted(node)?.kv_put(key, value.to_vec())
    })
}

/// The value of `key` (a linearizable read): `*out_value` and `*out_len`, freed with
/// `wire_bytes_free(*out_value, *out_len)`. `WIRE_ERR_NOT_FOUND` when there is no such key.
///
/// # Safety
/// `key` is NULL or a NUL-terminated string; the out-parameters are NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn wire_kv_get(
    node: *const wire_node,
    key: *const c_char,
    out_value: *mut *mut u8,
    out_len: *mut usize,
) -> wire_status {
    call(|| {
        out(out_value, "out_value")?;
        out(out_len, "out_len")?;
        let key = text(key, "key")?;
        let Some(value) = hosted(node)?.kv_get(key)? else {
            return Err(Failure::new(
                wire_status::WIRE_ERR_NOT_FOUND,
                format!("key '{key}' not found"),
            ));
        };
        let boxed = value.into_boxed_slice();
        let len = boxed.len();
        write(out_len, len);
        write(out_value, Box::into_raw(boxed) as *mut u8);
        Ok(())
    })
}

/// Deletes `key`; `*out_existed` (may be NULL) says whether it existed.
///
/// # Safety
/// `key` is NULL or a NUL-terminated string; `out_existed` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn wire_kv_delete(
    node: *const wire_node,
    key: *const c_char,
    out_existed: *mut bool,
) -> wire_status {
    call(|| {
        let key = text(key, "key")?;
        let existed = hosted(node)?.kv_delete(key)?;
        if !out_existed.is_null() {
            write(out_existed, existed);
        }
        Ok(())
    })
}

/// Up to `limit` keys under `prefix` after `after` (NULL: from the start), as the JSON of
/// `GET /kv`: `{"items": [{"key", "value" | "value_base64"}], "more", "next_after"}`. Free
/// `*out_json` with `wire_string_free`.
///
/// # Safety
/// `prefix` is NULL or a NUL-terminated string; `after` is NULL or one; `out_json` is NULL
/// or writable.
#[no_mangle]
pub unsafe extern "C" fn wire_kv_list(
    node: *const wire_node,
    prefix: *const c_char,
    after: *const c_char,
    limit: usize,
    out_json: *mut *mut c_char,
) -> wire_status {
    call(|| {
        out(out_json, "out_json")?;
        let prefix = text(prefix, "prefix")?;
        let after = optional_text(after, "after")?;
        let json = hosted(node)?.kv_list(prefix, after, limit)?;
        write(out_json, c_string(json));
        Ok(())
    })
}

/// An atomic transaction in the JSON of `POST /kv/txn` (`compare`, `success`, `failure`);
/// `*out_succeeded` says whether every compare held (so `success` ran).
///
/// # Safety
/// `txn_json` is NULL or a NUL-terminated string; `out_succeeded` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn wire_kv_txn(
    node: *const wire_node,
    txn_json: *const c_char,
    out_succeeded: *mut bool,
) -> wire_status {
    call(|| {
        out(out_succeeded, "out_succeeded")?;
        let body = text(txn_json, "txn_json")?;
        let succeeded = hosted(node)?.kv_txn(body)?;
        write(out_succeeded, succeeded);
        Ok(())
    })
}

/// Creates or updates the pipeline `spec` (JSON or YAML) describes. `*out_json` (may be
/// NULL) gets `{"name", "version", "created"}`; free it with `wire_string_free`. An invalid
/// spec gives `WIRE_ERR_INVALID_SPEC` naming every problem's place.
///
/// # Safety
/// `spec` is NULL or a NUL-terminated string; `out_json` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn wire_pipeline_apply(
    node: *const wire_node,
    spec: *const c_char,
    out_json: *mut *mut c_char,
) -> wire_status {
    call(|| {
        let spec = text(spec, "spec")?;
        let json = hosted(node)?.pipeline_apply(spec)?;
        if !out_json.is_null() {
            write(out_json, c_string(json));
        }
        Ok(())
    })
}

/// Every pipeline as `{"pipelines": [...]}` JSON; free with `wire_string_free`.
///
/// # Safety
/// `out_json` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn wire_pipeline_list(
    node: *const wire_node,
    out_json: *mut *mut c_char,
) -> wire_status {
    call(|| {
        out(out_json, "out_json")?;
        let json = hosted(node)?.pipeline_list()?;
        write(out_json, c_string(json));
        Ok(())
    })
}

/// A pipeline's status as `GET /pipelines/{name}` answers it (`state` is `running`,
/// `finished`, `failed`, ...); free with `wire_string_free`. `WIRE_ERR_NOT_FOUND` if none.
///
/// # Safety
/// `name` is NULL or a NUL-terminated string; `out_json` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn wire_pipeline_status(
    node: *const wire_node,
    name: *const c_char,
    out_json: *mut *mut c_char,
) -> wire_status {
    call(|| {
        out(out_json, "out_json")?;
        let name = text(name, "name")?;
        let json = hosted(node)?.pipeline_status(name)?;
        write(out_json, c_string(json));
        Ok(())
    })
}

/// Pauses a pipeline (its jobs stop after a final checkpoint).
///
/// # Safety
/// `name` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn wire_pipeline_pause(
    node: *const wire_node,
    name: *const c_char,
) -> wire_status {
    call(|| hosted(node)?.pipeline_set_running(text(name, "name")?, false))
}

/// Resumes a paused pipeline from its last checkpoint.
///
/// # Safety
/// `name` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn wire_pipeline_resume(
    node: *const wire_node,
    name: *const c_char,
) -> wire_status {
    call(|| hosted(node)?.pipeline_set_running(text(name, "name")?, true))
}

/// Deletes a pipeline with its assignments and checkpoints.
///
/// # Safety
/// `name` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn wire_pipeline_delete(
    node: *const wire_node,
    name: *const c_char,
) -> wire_status {
    call(|| hosted(node)?.pipeline_delete(text(name, "name")?))
}

/// Frees a string libwire returned. NULL does nothing.
///
/// # Safety
/// `s` is NULL or a string from libwire not freed before.
#[no_mangle]
pub unsafe extern "C" fn wire_string_free(s: *mut c_char) {
    if !s.is_null() {
        let _ = catch_unwind(|| drop(CString::from_raw(s)));
    }
}

/// Frees bytes libwire returned, with the length it returned. NULL does nothing.
///
/// # Safety
/// `data` and `len` are as libwire returned them, not freed before.
#[no_mangle]
pub unsafe extern "C" fn wire_bytes_free(data: *mut u8, len: usize) {
    if !data.is_null() {
        let _ = catch_unwind(|| drop(Box::from_raw(std::ptr::slice_from_raw_parts_mut(data, len))));
    }
}

/// The number of records in a transform's input.
///
/// # Safety
/// `batch` is NULL or the input of the running transform call; `out_len` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn wire_batch_len(
    batch: *const wire_batch,
    out_len: *mut usize,
) -> wire_status {
    call(|| {
        out(out_len, "out_len")?;
        let batch = batch.as_ref().ok_or_else(|| null("batch"))?;
        write(out_len, batch.spans.len());
        Ok(())
    })
}

/// Record `index`'s value as JSON text: `*out_json` (NUL-terminated) and `*out_len` (without
/// the NUL), owned by libwire and valid until the transform call returns.
///
/// # Safety
/// `batch` is NULL or the running call's input; the out-parameters NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn wire_batch_value(
    batch: *const wire_batch,
    index: usize,
    out_json: *mut *const c_char,
    out_len: *mut usize,
) -> wire_status {
    call(|| {
        out(out_json, "out_json")?;
        out(out_len, "out_len")?;
        let batch = batch.as_ref().ok_or_else(|| null("batch"))?;
        let (start, len) = *batch
            .spans
            .get(index)
            .ok_or_else(|| out_of_range(index, batch.spans.len()))?;
        write(out_json, batch.text[start..].as_ptr() as *const c_char);
        write(out_len, len);
        Ok(())
    })
}

/// Record `index`'s key (`*out_key`, `*out_len`), owned by libwire and valid until the call
/// returns; `WIRE_ERR_NOT_FOUND` when the record has no key.
///
/// # Safety
/// As `wire_batch_value`.
#[no_mangle]
pub unsafe extern "C" fn wire_batch_key(
    batch: *const wire_batch,
    index: usize,
    out_key: *mut *const u8,
    out_len: *mut usize,
) -> wire_status {
    call(|| {
        out(out_key, "out_key")?;
        out(out_len, "out_len")?;
        let batch = batch.as_ref().ok_or_else(|| null("batch"))?;
        let key = batch
            .keys
            .get(index)
            .ok_or_else(|| out_of_range(index, batch.keys.len()))?;
        let Some(key) = key else {
            return Err(Failure::new(
                wire_status::WIRE_ERR_NOT_FOUND,
                format!("record {index} has no key"),
            ));
        };
        write(out_key, key.as_ptr());
        write(out_len, key.len());
        Ok(())
    })
}

fn out_of_range(index: usize, len: usize) -> Failure {
    Failure::new(
        wire_status::WIRE_ERR_INVALID_ARGUMENT,
        format!("record {index} is out of range: the batch has {len}"),
    )
}

/// Emits a record made from input `input` (keeping its key, time and origin) with the value
/// in `json` (`len` bytes of JSON text). Invalid JSON sends the input to the dead-letter
/// sink with the parse error. Call it as many times as there are outputs.
///
/// # Safety
/// `builder` is NULL or the running call's builder; `json` NULL or `len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn wire_batch_builder_emit(
    builder: *mut wire_batch_builder,
    input: usize,
    json: *const c_char,
    len: usize,
) -> wire_status {
    emit(builder, input, json, len, None)
}

/// Like `wire_batch_builder_emit`, setting the output's key to `key_len` bytes at `key`
/// (for a transform used as `key_by`).
///
/// # Safety
/// As `wire_batch_builder_emit`; `key` is NULL or `key_len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn wire_batch_builder_emit_keyed(
    builder: *mut wire_batch_builder,
    input: usize,
    json: *const c_char,
    len: usize,
    key: *const u8,
    key_len: usize,
) -> wire_status {
    match bytes(key, key_len, "key") {
        Ok(k) => emit(builder, input, json, len, Some(k.to_vec())),
        Err(f) => {
            status::clear();
            status::fail(f)
        }
    }
}

unsafe fn emit(
    builder: *mut wire_batch_builder,
    input: usize,
    json: *const c_char,
    len: usize,
    key: Option<Vec<u8>>,
) -> wire_status {
    call(|| {
        let b = builder.as_mut().ok_or_else(|| null("builder"))?;
        if input >= b.inputs {
            return Err(out_of_range(input, b.inputs));
        }
        let json = bytes(json as *const u8, len, "json")?;
        b.emitted.push((input, json.to_vec(), key));
        Ok(())
    })
}

/// Sends input `input` to the dead-letter sink with `reason`.
///
/// # Safety
/// `builder` is NULL or the running call's builder; `reason` NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn wire_batch_builder_reject(
    builder: *mut wire_batch_builder,
    input: usize,
    reason: *const c_char,
) -> wire_status {
    call(|| {
        let b = builder.as_mut().ok_or_else(|| null("builder"))?;
        if input >= b.inputs {
            return Err(out_of_range(input, b.inputs));
        }
        let reason = text(reason, "reason")?;
        b.rejected.push((input, reason.to_string()));
        Ok(())
    })
}

/// Says why the call is about to return an error status (the dead letters' reason).
///
/// # Safety
/// `builder` is NULL or the running call's builder; `message` NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn wire_batch_builder_fail(
    builder: *mut wire_batch_builder,
    message: *const c_char,
) -> wire_status {
    call(|| {
        let b = builder.as_mut().ok_or_else(|| null("builder"))?;
        b.failure = Some(text(message, "message")?.to_string());
        Ok(())
    })
}

/// The C side's `user_data`, shared by the partitions' threads as the transform's contract
/// requires of the caller.
struct UserData(*mut c_void);
// SAFETY: the registration contract (wire.h) makes `user_data` shareable between threads.
unsafe impl Send for UserData {}
// SAFETY: as above.
unsafe impl Sync for UserData {}

/// A registration's `user_data` and the function that frees it when the node drops the
/// registration.
struct Owned {
    user_data: UserData,
    free: wire_free_fn,
}

impl Drop for Owned {
    fn drop(&mut self) {
        if let Some(free) = self.free {
            // SAFETY: called once, with the pointer given at registration, as documented.
            unsafe { free(self.user_data.0) }
        }
    }
}

struct CTransform {
    name: String,
    function: unsafe extern "C" fn(
        *mut c_void,
        *const wire_batch,
        *mut wire_batch_builder,
    ) -> wire_status,
    data: Owned,
}

type KeyedCall = unsafe extern "C" fn(
    *mut c_void,
    *const u8,
    usize,
    *const c_char,
    usize,
    *const c_char,
    usize,
    *mut wire_keyed_result,
) -> wire_status;

struct CKeyed {
    name: String,
    function: KeyedCall,
    data: Owned,
}

impl CKeyed {
    /// One record through the function: the new state and the values to emit, or why not.
    fn call(
        &self,
        key: &[u8],
        state: Option<&jaq_json::Val>,
        value: &jaq_json::Val,
    ) -> Result<(Update, Vec<jaq_json::Val>), String> {
        let state = state.map(|s| {
            let mut t = Vec::new();
            wire_core::pipeline::json::write_json(s, &mut t);
            t.push(0);
            t
        });
        let mut v = Vec::new();
        wire_core::pipeline::json::write_json(value, &mut v);
        v.push(0);
        let mut result = wire_keyed_result {
            state: None,
            emitted: Vec::new(),
            failure: None,
        };
        let (state_ptr, state_len) = match &state {
            Some(t) => (t.as_ptr() as *const c_char, t.len() - 1),
            None => (std::ptr::null(), 0),
        };
        // SAFETY: every pointer is valid for the call, as the function's contract says.
        let status = unsafe {
            (self.function)(
                self.data.user_data.0,
                key.as_ptr(),
                key.len(),
                state_ptr,
                state_len,
                v.as_ptr() as *const c_char,
                v.len() - 1,
                &mut result,
            )
        };
        let name = &self.name;
        if status != wire_status::WIRE_OK {
            let why = result.failure.unwrap_or_else(|| "no message given".into());
            return Err(format!(
                "C keyed function '{name}' returned {status:?}: {why}"
            ));
        }
        let parse = |json: &[u8], what: &str| {
            wire_core::pipeline::jq::parse_json(json)
                .map_err(|e| format!("C keyed function '{name}' gave invalid JSON as {what}: {e}"))
        };
        let update = match result.state {
            None => Update::Keep,
            Some(None) => Update::Forget,
            Some(Some(json)) => Update::Set(parse(&json, "the state")?),
        };
        let emitted = result
            .emitted
            .iter()
            .map(|json| parse(json, "a value to emit"))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((update, emitted))
    }
}

impl KeyedFunction for CKeyed {
    fn apply(
        &self,
        states: &mut KeyStates<'_>,
        records: Vec<Record>,
        out: &mut Vec<Record>,
        rejected: &mut Vec<(Record, String)>,
    ) {
        PerKey(
            |key: &[u8], state: Option<&jaq_json::Val>, value: &jaq_json::Val| {
                self.call(key, state, value)
            },
        )
        .apply(states, records, out, rejected)
    }
}

impl Transform for CTransform {
    fn apply(
        &self,
        batch: Vec<Record>,
        out: &mut Vec<Record>,
        rejected: &mut Vec<(Record, String)>,
    ) {
        let mut input = wire_batch {
            text: Vec::new(),
            spans: Vec::with_capacity(batch.len()),
            keys: Vec::with_capacity(batch.len()),
        };
        for r in &batch {
            let start = input.text.len();
            wire_core::pipeline::json::write_json(&r.value, &mut input.text);
            input.spans.push((start, input.text.len() - start));
            input.text.push(0);
            input.keys.push(r.key.clone());
        }
        let mut builder = wire_batch_builder {
            inputs: batch.len(),
            emitted: Vec::new(),
            rejected: Vec::new(),
            failure: None,
        };
        // SAFETY: both pointers are valid for the call, as the transform's contract says.
        let status = unsafe { (self.function)(self.data.user_data.0, &input, &mut builder) };
        if status != wire_status::WIRE_OK {
            let why = builder.failure.unwrap_or_else(|| "no message given".into());
            let reason = format!("C transform '{}' returned {status:?}: {why}", self.name);
            rejected.extend(batch.into_iter().map(|r| (r, reason.clone())));
            return;
        }
        for (i, json, key) in builder.emitted {
            let record = &batch[i];
            match wire_core::pipeline::jq::parse_json(&json) {
                Ok(value) => out.push(Record {
                    value,
                    key: key.or_else(|| record.key.clone()),
                    ..record.clone()
                }),
                Err(e) => rejected.push((
                    record.clone(),
                    format!("C transform '{}' emitted invalid JSON: {e}", self.name),
                )),
            }
        }
        for (i, reason) in builder.rejected {
            rejected.push((
                batch[i].clone(),
                format!("C transform '{}': {reason}", self.name),
            ));
        }
    }
}
