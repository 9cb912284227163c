//! `cloister-attestor keygen` (placeholder: replaced by the owning work item).

use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn exec(_args: Args) -> ExitCode {
    eprintln!("cloister-attestor: keygen is not built yet");
    ExitCode::from(2)
}
