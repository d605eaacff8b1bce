//! The `wire` program; see [`wire_core::cli`].

fn main() -> std::process::ExitCode {
    wire_core::cli::main()
}
