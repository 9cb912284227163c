//! `cloister-runner store` (placeholder: replaced by the owning work item).

use std::process::ExitCode;

#[derive(Debug, clap::Subcommand)]
pub enum Command {}

pub fn exec(cmd: Command) -> ExitCode {
    match cmd {}
}
