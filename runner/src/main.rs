//! `cloister-runner`, the front binary: `run` here, every other subcommand
//! in `cloister-runner-full` (`cli::front_main` says why). Glue only.
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    // Before anything can look a name up (see cloister_nss).
    if let Err(e) = cloister_nss::builtin_only() {
        eprintln!("cloister-runner: {e}");
        return std::process::ExitCode::from(125);
    }
    cloister_runner::cli::front_main()
}
