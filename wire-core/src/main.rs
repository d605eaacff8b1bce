//! The `wire` program; see [`wire_core::cli`].

/// mimalloc: a node allocates many small, short-lived buffers per request (HTTP, MessagePack,
/// batches); glibc's allocator spent about a tenth of a node's CPU on them under load.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    wire_core::cli::main()
}
