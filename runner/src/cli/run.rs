//! `cloister-runner run` (placeholder: replaced by the owning work item).

use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn exec(_args: Args) -> ExitCode {
    eprintln!("cloister-runner: run is not built yet");
    ExitCode::from(2)
}
