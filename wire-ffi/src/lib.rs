//! libwire: Wire's C ABI (`include/wire.h`, generated from this crate by cbindgen). C and Go
//! programs link it (shared or static) to host nodes, use the key-value space, run pipelines
//! and register C transforms.
//!
//! `ffi` holds every `extern "C"` function and all raw-pointer code; `host` is the safe
//! side (the handle table and node calls); `status` the codes and per-thread last error.
//! Conventions are in `wire-ffi/README.md`.

pub mod ffi;
mod host;
pub mod status;

pub use ffi::*;
pub use status::wire_status;
