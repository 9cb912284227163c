//! `cloister-runner-full`: every subcommand (the front `cloister-runner`
//! executes it for all but `run`). Argument parsing lives in the library
//! (`cli`); this is glue.
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    cloister_runner::cli::start(cloister_runner::cli::main)
}
