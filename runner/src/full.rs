//! `cloister-runner-full`: every subcommand (the front `cloister-runner`
//! executes it for all but `run`). Argument parsing lives in the library
//! (`cli`); this is glue.
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    // Before anything can look a name up (see cloister_nss).
    if let Err(e) = cloister_nss::builtin_only() {
        eprintln!("cloister-runner: {e}");
        return std::process::ExitCode::from(125);
    }
    cloister_runner::cli::main()
}
