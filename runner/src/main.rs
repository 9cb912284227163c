//! `cloister-runner`, the front binary: `run` here, every other subcommand
//! in `cloister-runner-full` (`cli::front_main` says why). Glue only.
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    cloister_runner::cli::start(cloister_runner::cli::front_main)
}
