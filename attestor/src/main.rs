//! `cloister-attestor`: argument parsing lives in the library (`cli`); this is glue.
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    cloister_attestor::cli::main()
}
