//! The `cloister-runner` command line: one module per subcommand, each with
//! its clap `Args` and an `exec` returning the process exit code.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

mod artifacts;
mod build;
mod cancel;
mod common;
mod image;
mod jobs;
mod logs;
mod profile;
mod quickstart;
mod run;
mod serve;
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
    /// Run the job daemon (API on a Unix socket, optional TCP).
    Serve(serve::Args),
    /// Submit a build job to the daemon, stream its log, wait for it.
    Build(Box<build::Args>),
    /// List the daemon's jobs.
    Jobs(jobs::Args),
    /// Print a job's log.
    Logs(logs::Args),
    /// Cancel a queued or running job.
    Cancel(cancel::Args),
    /// Download a succeeded job's artifacts and provenance (digest-checked).
    Artifacts(artifacts::Args),
    /// Start both daemons on embedded defaults, build repo A, verify its provenance.
    Quickstart(quickstart::Args),
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
        Command::Serve(args) => serve::exec(args),
        Command::Build(args) => build::exec(*args),
        Command::Jobs(args) => jobs::exec(args),
        Command::Logs(args) => logs::exec(args),
        Command::Cancel(args) => cancel::exec(args),
        Command::Artifacts(args) => artifacts::exec(args),
        Command::Quickstart(args) => quickstart::exec(args),
    }
}
