//! The `cloister-runner` command line: one module per subcommand, each with
//! its clap `Args` and an `exec` returning the process exit code.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

mod image;
mod profile;
mod run;
mod snapshot;
mod store;

/// Cloister's hermetic build runner.
#[derive(Debug, Parser)]
#[command(name = "cloister-runner", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a command in a fresh sandbox and exit with its status.
    Run(run::Args),
    /// Validate sandbox profiles.
    #[command(subcommand)]
    Profile(profile::Command),
    /// Snapshot a directory deterministically into the content-addressed store.
    Snapshot(snapshot::Args),
    /// Manage the content-addressed store.
    #[command(subcommand)]
    Store(store::Command),
    /// Import OCI builder images.
    #[command(subcommand)]
    Image(image::Command),
}

/// Parses the command line and runs the chosen subcommand.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => run::exec(args),
        Command::Profile(cmd) => profile::exec(cmd),
        Command::Snapshot(args) => snapshot::exec(args),
        Command::Store(cmd) => store::exec(cmd),
        Command::Image(cmd) => image::exec(cmd),
    }
}
