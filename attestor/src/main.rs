//! `cloister-attestor`: argument parsing lives in the library (`cli`); this is glue.
#![forbid(unsafe_code)]

/// See `mimalloc` in the workspace manifest and ARCHITECTURE.md.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    // Before anything can look a name up (see cloister_nss).
    if let Err(e) = cloister_nss::builtin_only() {
        eprintln!("cloister-attestor: {e}");
        return std::process::ExitCode::FAILURE;
    }
    cloister_attestor::cli::main()
}
