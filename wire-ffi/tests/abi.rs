//! The C ABI called as C calls it: every bad input gives a status and a message.

use std::ffi::{c_char, c_void, CStr, CString};
use std::ptr;
use std::sync::atomic::{AtomicUsize, Ordering};

use wire::*;

fn last_error() -> String {
    let p = wire_last_error();
    assert!(!p.is_null(), "a failed call leaves a message");
    // SAFETY: libwire's message is a NUL-terminated string valid until the next call.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

fn config(dir: &std::path::Path) -> CString {
    CString::new(format!(
        "node_id = 1\nhttp_addr = \"127.0.0.1:0\"\nraft_addr = \"127.0.0.1:0\"\n\
         data_dir = \"{}\"\nbootstrap = true\nheartbeat_ms = 50\n\
         election_timeout_min_ms = 300\nelection_timeout_max_ms = 600\n",
        dir.display()
    ))
    .unwrap()
}

fn start(dir: &std::path::Path) -> *mut wire_node {
    let mut node = ptr::null_mut();
    // SAFETY: a valid config string and out-parameter.
    let s = unsafe { wire_node_start(config(dir).as_ptr(), &mut node) };
    assert_eq!(s, wire_status::WIRE_OK, "{}", last_error());
    assert!(!node.is_null());
    node
}

fn take_string(p: *mut c_char) -> String {
    // SAFETY: a string libwire returned, freed once here.
    let s = unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned();
    unsafe { wire_string_free(p) };
    s
}

#[test]
fn null_and_unknown_handles_are_refused_not_dereferenced() {
    let made_up = 0xdead_beef_usize as *mut wire_node;
    for handle in [ptr::null_mut(), made_up] {
        let key = c"k";
        // SAFETY: arguments are valid except the handle, which is what is tested.
        unsafe {
            assert_eq!(
                wire_kv_put(handle, key.as_ptr(), ptr::null(), 0),
                wire_status::WIRE_ERR_INVALID_HANDLE
            );
            assert!(last_error().contains("handle"));
            let mut json = ptr::null_mut();
            assert_eq!(
                wire_node_status(handle, &mut json),
                wire_status::WIRE_ERR_INVALID_HANDLE
            );
            assert!(json.is_null(), "nothing written on failure");
            assert_eq!(
                wire_pipeline_pause(handle, c"p".as_ptr()),
                wire_status::WIRE_ERR_INVALID_HANDLE
            );
        }
        assert_eq!(
            wire_node_shutdown(handle),
            wire_status::WIRE_ERR_INVALID_HANDLE
        );
        assert_eq!(wire_node_free(handle), wire_status::WIRE_ERR_INVALID_HANDLE);
    }
}

#[test]
fn malformed_config_and_null_out_parameters() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("never");
    for bad in [
        c"node_id = \"one\"",
        c"{\"node_id\": 1, \"no_such_key\": true}",
        c"{not json",
    ] {
        let mut node = ptr::null_mut();
        // SAFETY: valid pointers.
        let s = unsafe { wire_node_start(bad.as_ptr(), &mut node) };
        assert_eq!(s, wire_status::WIRE_ERR_INVALID_CONFIG, "{bad:?}");
        assert!(node.is_null());
        assert!(
            last_error().contains("invalid configuration"),
            "{}",
            last_error()
        );
    }
    // A NULL out-parameter is refused before anything starts.
    // SAFETY: the config is valid; the NULL out-parameter is what is tested.
    let s = unsafe { wire_node_start(config(&data).as_ptr(), ptr::null_mut()) };
    assert_eq!(s, wire_status::WIRE_ERR_NULL_ARGUMENT);
    assert!(!data.exists(), "no node was started");
    // SAFETY: as above.
    let s = unsafe { wire_node_start(ptr::null(), &mut ptr::null_mut()) };
    assert_eq!(s, wire_status::WIRE_ERR_NULL_ARGUMENT);
    assert!(last_error().contains("config"));
}

#[test]
fn kv_and_bad_arguments_on_a_live_node() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path());
    // SAFETY: every pointer is valid or deliberately NULL/invalid as each case says.
    unsafe {
        assert_eq!(
            wire_kv_put(node, c"a/1".as_ptr(), b"one".as_ptr(), 3),
            wire_status::WIRE_OK
        );
        assert!(wire_last_error().is_null(), "success clears the last error");
        let (mut v, mut n) = (ptr::null_mut(), 0usize);
        assert_eq!(
            wire_kv_get(node, c"a/1".as_ptr(), &mut v, &mut n),
            wire_status::WIRE_OK
        );
        assert_eq!(std::slice::from_raw_parts(v, n), b"one");
        wire_bytes_free(v, n);
        assert_eq!(
            wire_kv_get(node, c"a/none".as_ptr(), &mut v, &mut n),
            wire_status::WIRE_ERR_NOT_FOUND
        );

        let bad_utf8 = [0xffu8, 0xfe, 0];
        let s = wire_kv_put(node, bad_utf8.as_ptr() as *const c_char, ptr::null(), 0);
        assert_eq!(s, wire_status::WIRE_ERR_INVALID_ARGUMENT);
        assert!(last_error().contains("key is not UTF-8"));
        assert_eq!(
            wire_kv_put(node, c"k".as_ptr(), ptr::null(), 5),
            wire_status::WIRE_ERR_NULL_ARGUMENT
        );
        assert_eq!(
            wire_kv_put(node, c"".as_ptr(), ptr::null(), 0),
            wire_status::WIRE_ERR_INVALID_ARGUMENT
        );
        let big = vec![0u8; 2 * 1024 * 1024];
        assert_eq!(
            wire_kv_put(node, c"big".as_ptr(), big.as_ptr(), big.len()),
            wire_status::WIRE_ERR_TOO_LARGE
        );

        let mut json = ptr::null_mut();
        assert_eq!(
            wire_kv_list(node, c"a/".as_ptr(), ptr::null(), 0, &mut json),
            wire_status::WIRE_ERR_INVALID_ARGUMENT
        );
        assert_eq!(
            wire_kv_list(node, c"a/".as_ptr(), ptr::null(), 10, &mut json),
            wire_status::WIRE_OK
        );
        let page: serde_json::Value = serde_json::from_str(&take_string(json)).unwrap();
        assert_eq!(page["items"][0]["value"], "one");

        let mut ok = false;
        let txn = c"{\"compare\": [{\"key\": \"a/1\", \"op\": \"equals\", \"value\": \"one\"}], \"success\": [{\"op\": \"delete\", \"key\": \"a/1\"}]}";
        assert_eq!(
            wire_kv_txn(node, txn.as_ptr(), &mut ok),
            wire_status::WIRE_OK
        );
        assert!(ok);
        assert_eq!(
            wire_kv_txn(node, c"{\"compare\": 5}".as_ptr(), &mut ok),
            wire_status::WIRE_ERR_INVALID_ARGUMENT
        );
        assert!(
            last_error().contains("malformed transaction"),
            "{}",
            last_error()
        );

        let s = wire_pipeline_apply(
            node,
            c"{\"name\": \"x\", \"sources\": [{\"type\": \"nope\"}]}".as_ptr(),
            ptr::null_mut(),
        );
        assert_eq!(s, wire_status::WIRE_ERR_INVALID_SPEC);
        let msg = last_error();
        assert!(
            msg.contains("sources[0].type") && msg.contains("sinks"),
            "{msg}"
        );
        assert_eq!(
            wire_pipeline_apply(node, c"name: [unclosed".as_ptr(), ptr::null_mut()),
            wire_status::WIRE_ERR_INVALID_SPEC
        );
        let mut status = ptr::null_mut();
        assert_eq!(
            wire_pipeline_status(node, c"missing".as_ptr(), &mut status),
            wire_status::WIRE_ERR_NOT_FOUND
        );
        assert!(status.is_null());
        assert_eq!(
            wire_pipeline_delete(node, c"missing".as_ptr()),
            wire_status::WIRE_ERR_NOT_FOUND
        );
    }
    assert_eq!(wire_node_free(node), wire_status::WIRE_OK);
}

static FREED: AtomicUsize = AtomicUsize::new(0);

unsafe extern "C" fn count_free(user_data: *mut c_void) {
    assert_eq!(user_data as usize, 42);
    FREED.fetch_add(1, Ordering::SeqCst);
}

/// Emits each input as is, rejects `{"bad": true}`, and fails whole batches with `"fail"`.
unsafe extern "C" fn pass(
    _: *mut c_void,
    input: *const wire_batch,
    out: *mut wire_batch_builder,
) -> wire_status {
    let mut n = 0;
    assert_eq!(wire_batch_len(input, &mut n), wire_status::WIRE_OK);
    let (mut json, mut len) = (ptr::null(), 0);
    assert_eq!(
        wire_batch_value(input, n, &mut json, &mut len),
        wire_status::WIRE_ERR_INVALID_ARGUMENT,
        "out of range"
    );
    for i in 0..n {
        assert_eq!(
            wire_batch_value(input, i, &mut json, &mut len),
            wire_status::WIRE_OK
        );
        let text = std::slice::from_raw_parts(json as *const u8, len);
        if text == b"\"fail\"" {
            wire_batch_builder_fail(out, c"asked to fail".as_ptr());
            return wire_status::WIRE_ERR_INTERNAL;
        }
        if text == b"{\"bad\":true}" {
            wire_batch_builder_reject(out, i, c"bad record".as_ptr());
        } else if text == b"{\"garbage\":true}" {
            wire_batch_builder_emit(out, i, c"{oops".as_ptr(), 5);
        } else {
            wire_batch_builder_emit(out, i, json, len);
        }
    }
    assert_eq!(
        wire_batch_builder_emit(out, n, json, len),
        wire_status::WIRE_ERR_INVALID_ARGUMENT
    );
    wire_status::WIRE_OK
}

fn parts(dir: &std::path::Path) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_name().to_string_lossy().starts_with("part-") {
            for line in std::fs::read_to_string(e.path()).unwrap().lines() {
                out.push(serde_json::from_str(line).unwrap());
            }
        }
    }
    out
}

#[test]
fn c_transforms_their_errors_and_their_user_data() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(&dir.path().join("node"));
    let input = dir.path().join("in.jsonl");
    std::fs::write(
        &input,
        "{\"a\":1}\n{\"bad\":true}\n{\"garbage\":true}\n{\"a\":2}\n",
    )
    .unwrap();
    let spec = |name: &str, input: &str| {
        CString::new(format!(
            r#"{{"name": "{name}", "sources": [{input}], "transforms": [{{"type": "pass"}}],
                "sinks": [{{"type": "file", "config": {{"path": "{out}/{name}-out"}}}}],
                "dead_letter": {{"type": "file", "config": {{"path": "{out}/{name}-dead"}}}}}}"#,
            out = dir.path().display()
        ))
        .unwrap()
    };
    // SAFETY: valid pointers; `pass` and `count_free` follow the callback contracts.
    unsafe {
        let s = wire_node_register_transform(
            node,
            c"pass".as_ptr(),
            Some(pass),
            42 as *mut c_void,
            Some(count_free),
        );
        assert_eq!(s, wire_status::WIRE_OK, "{}", last_error());
        let refused = wire_node_register_transform(
            node,
            c"key_by".as_ptr(),
            Some(pass),
            42 as *mut c_void,
            Some(count_free),
        );
        assert_eq!(refused, wire_status::WIRE_ERR_INVALID_ARGUMENT);
        assert_eq!(
            FREED.load(Ordering::SeqCst),
            0,
            "a refused registration keeps user_data the caller's"
        );
        assert_eq!(
            wire_node_register_transform(node, c"none".as_ptr(), None, ptr::null_mut(), None),
            wire_status::WIRE_ERR_NULL_ARGUMENT
        );

        let file = format!(
            r#"{{"type": "file", "config": {{"path": "{}"}}}}"#,
            input.display()
        );
        assert_eq!(
            wire_pipeline_apply(node, spec("c1", &file).as_ptr(), ptr::null_mut()),
            wire_status::WIRE_OK
        );
        let fail = r#"{"type": "generator", "config": {"count": 3, "template": "fail"}}"#;
        assert_eq!(
            wire_pipeline_apply(node, spec("c2", fail).as_ptr(), ptr::null_mut()),
            wire_status::WIRE_OK
        );
        for name in [c"c1", c"c2"] {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
            loop {
                let mut json = ptr::null_mut();
                assert_eq!(
                    wire_pipeline_status(node, name.as_ptr(), &mut json),
                    wire_status::WIRE_OK
                );
                let status: serde_json::Value = serde_json::from_str(&take_string(json)).unwrap();
                if status["state"] == "finished" {
                    break;
                }
                assert!(std::time::Instant::now() < deadline, "{status}");
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        }
    }
    let out = parts(&dir.path().join("c1-out"));
    assert_eq!(
        out,
        vec![serde_json::json!({"a": 1}), serde_json::json!({"a": 2})]
    );
    let dead = parts(&dir.path().join("c1-dead"));
    let errors: Vec<&str> = dead.iter().map(|d| d["error"].as_str().unwrap()).collect();
    assert_eq!(dead.len(), 2, "{dead:?}");
    assert!(
        errors.iter().any(|e| e.contains("bad record")),
        "{errors:?}"
    );
    assert!(
        errors.iter().any(|e| e.contains("emitted invalid JSON")),
        "{errors:?}"
    );
    let failed = parts(&dir.path().join("c2-dead"));
    assert_eq!(failed.len(), 3);
    assert!(failed[0]["error"]
        .as_str()
        .unwrap()
        .contains("returned WIRE_ERR_INTERNAL: asked to fail"));

    // Shutdown, use after shutdown, free (user_data freed once), double free.
    assert_eq!(wire_node_shutdown(node), wire_status::WIRE_OK);
    // SAFETY: valid pointers; the stopped node is what is tested.
    let s = unsafe { wire_kv_put(node, c"k".as_ptr(), ptr::null(), 0) };
    assert_eq!(s, wire_status::WIRE_ERR_SHUTDOWN);
    assert_eq!(wire_node_free(node), wire_status::WIRE_OK);
    assert_eq!(FREED.load(Ordering::SeqCst), 1);
    assert_eq!(wire_node_free(node), wire_status::WIRE_ERR_INVALID_HANDLE);
    assert!(last_error().contains("already freed"));
}

#[test]
fn the_version_macros_match_the_library() {
    // SAFETY: a static string.
    let v = unsafe { CStr::from_ptr(wire_version()) }.to_str().unwrap();
    assert_eq!(
        v,
        format!("{WIRE_VERSION_MAJOR}.{WIRE_VERSION_MINOR}.{WIRE_VERSION_PATCH}")
    );
    assert_eq!(v, env!("CARGO_PKG_VERSION"));
}

#[test]
fn a_second_node_joins_through_its_config() {
    let dir = tempfile::tempdir().unwrap();
    let first = start(&dir.path().join("n1"));
    let mut json = ptr::null_mut();
    // SAFETY: valid pointers.
    assert_eq!(
        unsafe { wire_node_status(first, &mut json) },
        wire_status::WIRE_OK
    );
    let status: serde_json::Value = serde_json::from_str(&take_string(json)).unwrap();
    let http = status["http_addr"].as_str().unwrap().to_string();
    let config = CString::new(format!(
        r#"{{"node_id": 2, "http_addr": "127.0.0.1:0", "raft_addr": "127.0.0.1:0",
            "data_dir": "{}", "join": ["{http}"]}}"#,
        dir.path().join("n2").display()
    ))
    .unwrap();
    let mut second = ptr::null_mut();
    // SAFETY: valid pointers.
    let s = unsafe { wire_node_start(config.as_ptr(), &mut second) };
    assert_eq!(s, wire_status::WIRE_OK, "{}", last_error());
    // A write through the new member is read on the first.
    // SAFETY: valid pointers.
    unsafe {
        assert_eq!(
            wire_kv_put(second, c"joined".as_ptr(), b"yes".as_ptr(), 3),
            wire_status::WIRE_OK
        );
        let (mut v, mut n) = (ptr::null_mut(), 0usize);
        assert_eq!(
            wire_kv_get(first, c"joined".as_ptr(), &mut v, &mut n),
            wire_status::WIRE_OK
        );
        assert_eq!(std::slice::from_raw_parts(v, n), b"yes");
        wire_bytes_free(v, n);
        assert_eq!(wire_node_status(second, &mut json), wire_status::WIRE_OK);
    }
    let status: serde_json::Value = serde_json::from_str(&take_string(json)).unwrap();
    assert_eq!(
        status["members"].as_array().map(|m| m.len()),
        Some(2),
        "{status}"
    );
    assert_eq!(wire_node_free(second), wire_status::WIRE_OK);
    assert_eq!(wire_node_free(first), wire_status::WIRE_OK);
}
