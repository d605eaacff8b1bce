//! Status codes and the per-thread last error.

use std::cell::RefCell;
use std::ffi::CString;

use wire_core::{Error, ErrorKind};

/// What a call did. `WIRE_OK` is 0; every other value is a failure whose message
/// `wire_last_error()` returns on the calling thread.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(non_camel_case_types)]
pub enum wire_status {
    /// Success.
    WIRE_OK = 0,
    /// A NULL, freed or unknown handle.
    WIRE_ERR_INVALID_HANDLE = 1,
    /// A required pointer argument is NULL.
    WIRE_ERR_NULL_ARGUMENT = 2,
    /// An argument is invalid: text that is not UTF-8, a bad key, limit or JSON body.
    WIRE_ERR_INVALID_ARGUMENT = 3,
    /// The node configuration is invalid (every problem is named in the message).
    WIRE_ERR_INVALID_CONFIG = 4,
    /// The pipeline spec is invalid (every problem is named with its place).
    WIRE_ERR_INVALID_SPEC = 5,
    /// A value, transaction or spec is too large.
    WIRE_ERR_TOO_LARGE = 6,
    /// The named key, pipeline or member does not exist.
    WIRE_ERR_NOT_FOUND = 7,
    /// The call conflicts with the cluster's state.
    WIRE_ERR_CONFLICT = 8,
    /// The cluster cannot serve the call now (no leader, quorum lost): retry later.
    WIRE_ERR_UNAVAILABLE = 9,
    /// The node is shut down.
    WIRE_ERR_SHUTDOWN = 10,
    /// The node's storage failed.
    WIRE_ERR_STORAGE = 11,
    /// An I/O failure (binding an address, creating the data directory).
    WIRE_ERR_IO = 12,
    /// An unexpected failure inside the engine.
    WIRE_ERR_INTERNAL = 13,
    /// A panic inside libwire was caught at the boundary (a bug: please report it).
    WIRE_ERR_PANIC = 14,
}

/// A failed call: its status and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub status: wire_status,
    pub message: String,
}

impl Failure {
    pub fn new(status: wire_status, message: impl Into<String>) -> Failure {
        Failure {
            status,
            message: message.into(),
        }
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        use wire_status::*;
        let status = match e.kind() {
            ErrorKind::BadRequest => WIRE_ERR_INVALID_ARGUMENT,
            ErrorKind::InvalidConfig => WIRE_ERR_INVALID_CONFIG,
            ErrorKind::InvalidSpec => WIRE_ERR_INVALID_SPEC,
            ErrorKind::TooLarge => WIRE_ERR_TOO_LARGE,
            ErrorKind::NotFound => WIRE_ERR_NOT_FOUND,
            ErrorKind::Conflict => WIRE_ERR_CONFLICT,
            ErrorKind::Unavailable => WIRE_ERR_UNAVAILABLE,
            ErrorKind::ShuttingDown => WIRE_ERR_SHUTDOWN,
            ErrorKind::Storage => WIRE_ERR_STORAGE,
            ErrorKind::Io => WIRE_ERR_IO,
            ErrorKind::Internal => WIRE_ERR_INTERNAL,
        };
        Failure::new(status, e.to_string())
    }
}

thread_local! {
    static LAST_ERROR: RefCell<Option<CString>> = const { RefCell::new(None) };
}

/// Records `failure` as this thread's last error and returns its status.
pub fn fail(failure: Failure) -> wire_status {
    let text = CString::new(failure.message.replace('\0', "\\0"))
        .unwrap_or_else(|_| CString::from(c"(unprintable error)"));
    LAST_ERROR.with(|e| *e.borrow_mut() = Some(text));
    failure.status
}

/// Clears this thread's last error (at the start of every call).
pub fn clear() {
    LAST_ERROR.with(|e| *e.borrow_mut() = None);
}

/// Runs `f` with this thread's last error message (none after a success).
pub fn with_last_error<R>(f: impl FnOnce(Option<&std::ffi::CStr>) -> R) -> R {
    LAST_ERROR.with(|e| f(e.borrow().as_deref()))
}
